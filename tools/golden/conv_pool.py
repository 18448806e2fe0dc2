"""Golden values for tests/test_conv2d.c and tests/test_pool.c: forward outputs and input/weight/bias
gradients for a given upstream gradient, from torch.nn.functional.conv2d, max_pool2d and
adaptive_avg_pool2d. Inputs are stored too, so the C tests copy them instead of regenerating them.

Run: /usr/bin/python3 tools/golden/conv_pool.py  (writes tests/golden/conv_pool.txt)"""
import torch
import torch.nn.functional as F

from golden_io import write_golden

torch.manual_seed(0)
out = {}

# name: (N, C, H, W, O, KH, KW, stride, pad, dil, groups, bias); stride/pad/dil are (h, w)
CONV = {
    "conv_s2p1": (2, 3, 7, 6, 4, 3, 3, (2, 2), (1, 1), (1, 1), 1, True),
    "conv_dil2_g2": (1, 4, 9, 8, 6, 3, 3, (1, 1), (2, 2), (2, 2), 2, False),
    "conv_dw": (2, 4, 6, 5, 8, 3, 3, (1, 1), (1, 1), (1, 1), 4, True),
    "conv_1x1s2": (2, 5, 7, 7, 3, 1, 1, (2, 2), (0, 0), (1, 1), 1, True),
    "conv_7x7s2p3": (2, 3, 11, 9, 4, 7, 7, (2, 2), (3, 3), (1, 1), 1, False),
    "conv_rect": (3, 2, 5, 8, 3, 2, 3, (1, 2), (0, 1), (2, 1), 1, True),
}
for name, (n, c, h, w, o, kh, kw, s, p, d, g, bias) in CONV.items():
    x = torch.randn(n, c, h, w, requires_grad=True)
    wt = (torch.randn(o, c // g, kh, kw) * 0.5).requires_grad_()
    b = torch.randn(o, requires_grad=True) if bias else None
    y = F.conv2d(x, wt, b, stride=s, padding=p, dilation=d, groups=g)
    gy = torch.randn_like(y)
    y.backward(gy)
    out.update({name + ".x": x, name + ".w": wt, name + ".y": y, name + ".gy": gy, name + ".gx": x.grad,
                name + ".gw": wt.grad})
    if bias:
        out.update({name + ".b": b, name + ".gb": b.grad})

# name: (shape, kernel, stride, pad, integer-valued input to force ties)
MAXPOOL = {
    "maxpool_k3s2p1": ((2, 3, 7, 9), 3, 2, 1, False),
    "maxpool_k2s2p0": ((1, 2, 5, 7), 2, 2, 0, False),
    "maxpool_ties": ((1, 2, 6, 7), 3, 2, 1, True),
    "maxpool_rect": ((2, 2, 8, 5), (3, 2), (2, 1), (1, 0), False),
}
for name, (shape, k, s, p, ties) in MAXPOOL.items():
    x = torch.randint(0, 3, shape).float() if ties else torch.randn(shape)
    x.requires_grad_()
    y = F.max_pool2d(x, k, s, p)
    gy = torch.randn_like(y)
    y.backward(gy)
    out.update({name + ".x": x, name + ".y": y, name + ".gy": gy, name + ".gx": x.grad})

ADAPTIVE = {
    "avg_1x1": ((2, 3, 5, 7), (1, 1)),
    "avg_2x3": ((2, 3, 5, 7), (2, 3)),
    "avg_3x4": ((1, 2, 7, 5), (3, 4)),
    "avg_up": ((1, 2, 3, 3), (4, 5)),
}
for name, (shape, size) in ADAPTIVE.items():
    x = torch.randn(shape, requires_grad=True)
    y = F.adaptive_avg_pool2d(x, size)
    gy = torch.randn_like(y)
    y.backward(gy)
    out.update({name + ".x": x, name + ".y": y, name + ".gy": gy, name + ".gx": x.grad})

write_golden("conv_pool.txt", out)
