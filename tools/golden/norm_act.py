"""Reference values for algorithms/ops/norm.c and activation.c (tests/test_norm.c, tests/test_activation.c).

Run: /usr/bin/python3 tools/golden/norm_act.py  ->  tests/golden/norm_act.txt
Inputs are stored next to the outputs so the C tests copy them into their graph inputs."""
import torch

from golden_io import write_golden

torch.manual_seed(0)
T = {}


def frozen_bn(x, w, b, rm, rv, eps):
    """DETR's FrozenBatchNorm2d.forward, verbatim."""
    scale = w * (rv + eps).rsqrt()
    bias = b - rm * scale
    return x * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)


# ---- batchnorm2d, training: two steps, outputs, running stats and one backward ----
N, C, H, W = 3, 4, 5, 3
bn = torch.nn.BatchNorm2d(C, eps=1e-5, momentum=0.1)
with torch.no_grad():
    bn.weight.copy_(torch.randn(C) * 0.5 + 1.0)
    bn.bias.copy_(torch.randn(C) * 0.3)
    bn.running_mean.copy_(torch.randn(C) * 0.2)
    bn.running_var.copy_(torch.rand(C) + 0.5)
bn.train()
T["bn_w"] = bn.weight.detach().clone()
T["bn_b"] = bn.bias.detach().clone()
T["bn_rm0"] = bn.running_mean.clone()
T["bn_rv0"] = bn.running_var.clone()
# an offset and uneven per-channel scales exercise the variance's precision
x1 = (torch.randn(N, C, H, W) * torch.tensor([1.0, 3.0, 0.1, 2.0]).reshape(1, C, 1, 1) + 5.0).requires_grad_()
x2 = torch.randn(N, C, H, W) * 2.0 - 1.0
dy1 = torch.randn(N, C, H, W)
T["bn_x1"] = x1.detach().clone()
T["bn_x2"] = x2
T["bn_dy1"] = dy1
y1 = bn(x1)
y1.backward(dy1)
T["bn_y1"] = y1
T["bn_rm1"] = bn.running_mean.clone()
T["bn_rv1"] = bn.running_var.clone()
T["bn_dx1"] = x1.grad
T["bn_dw1"] = bn.weight.grad
T["bn_db1"] = bn.bias.grad
with torch.no_grad():
    T["bn_y2"] = bn(x2)
T["bn_rm2"] = bn.running_mean.clone()
T["bn_rv2"] = bn.running_var.clone()

# ---- batchnorm2d, eval (running stats from bn_rm0/bn_rv0) with a backward, and frozen ----
bn_e = torch.nn.BatchNorm2d(C, eps=1e-5)
with torch.no_grad():
    bn_e.weight.copy_(T["bn_w"])
    bn_e.bias.copy_(T["bn_b"])
    bn_e.running_mean.copy_(T["bn_rm0"])
    bn_e.running_var.copy_(T["bn_rv0"])
bn_e.eval()
xe = x2.clone().requires_grad_()
ye = bn_e(xe)
ye.backward(dy1)
T["bne_y"] = ye
T["bne_dx"] = xe.grad
T["bne_dw"] = bn_e.weight.grad
T["bne_db"] = bn_e.bias.grad
T["bnf_y"] = frozen_bn(x2, T["bn_w"], T["bn_b"], T["bn_rm0"], T["bn_rv0"], 1e-5)

# ---- layernorm over the last dim: (2, 3, 7) with eps 1e-5 and (5, 64) with eps 1e-6, forward + backward ----
for tag, shape, eps in (("ln", (2, 3, 7), 1e-5), ("ln2", (5, 64), 1e-6)):
    Cn = shape[-1]
    x = (torch.randn(*shape) * 2.0 + 0.5).requires_grad_()
    w = (torch.randn(Cn) * 0.5 + 1.0).requires_grad_()
    b = (torch.randn(Cn) * 0.2).requires_grad_()
    dy = torch.randn(*shape)
    y = torch.nn.functional.layer_norm(x, (Cn,), w, b, eps)
    y.backward(dy)
    T[tag + "_x"] = x.detach()
    T[tag + "_w"] = w.detach()
    T[tag + "_b"] = b.detach()
    T[tag + "_dy"] = dy
    T[tag + "_y"] = y
    T[tag + "_dx"] = x.grad
    T[tag + "_dw"] = w.grad
    T[tag + "_db"] = b.grad

# ---- activations ----
xa = torch.cat([torch.linspace(-6.0, 6.0, 25), torch.randn(20) * 3.0, torch.tensor([-50.0, -20.0, 20.0, 50.0])])
xa = xa.reshape(7, 7).requires_grad_()
dya = torch.randn(7, 7)
T["act_x"] = xa.detach()
T["act_dy"] = dya
yg = torch.nn.functional.gelu(xa)  # exact erf form
yg.backward(dya)
T["gelu_y"] = yg
T["gelu_dx"] = xa.grad
T["sigmoid_y"] = torch.sigmoid(xa)
xs = torch.randn(4, 9) * 3.0
xs[1] = torch.linspace(990.0, 1000.0, 9)  # exp(1000) overflows without the max subtraction
xs[2] = torch.linspace(-1000.0, -980.0, 9)
xs[3, 4] = 1000.0
T["softmax_x"] = xs
T["softmax_y"] = torch.softmax(xs, dim=-1)

write_golden("norm_act.txt", T)
