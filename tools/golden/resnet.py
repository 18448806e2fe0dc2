"""Reference forward + backward of a full ResNet-50 (transformers' layout and names) in plain PyTorch.

Weights and inputs come from a closed formula (fill() here, the same in tests/test_resnet.c) so the golden
files hold only results: logits, loss, every small gradient in full, and for each large gradient its sum,
its L2 norm and 16 sampled elements. The reference runs in float64.

Two files:
  resnet50_eval.txt   batch norm with running statistics (eval mode), batch 2 at 64x64
  resnet50_train.txt  batch norm with batch statistics (training mode), batch 2 at 96x96, plus the updated
                      running statistics
Training-mode batch norm makes the backward pass ill-conditioned: torch's own float32 gradients differ
from its float64 ones by up to ~2.5% (relative L2 over a tensor) at the stem, so the C test holds each
training-mode gradient tensor to 5% relative L2 error and everything else to 1e-4. Run: /usr/bin/python3 tools/golden/resnet.py (a minute)."""
import math

import torch
import torch.nn.functional as F

from golden_io import write_golden

torch.set_num_threads(2)


def fnv1a(s):
    h = 2166136261
    for c in s.encode():
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h


def unit(i, seed):
    """A well-spread pseudo-random value of mean 0 and variance 1 (integer hash; same in C)."""
    h = (i * 0x9E3779B1 + seed) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return (2.0 * (h / 4294967296.0) - 1.0) * 1.7320508075688772


def fill(name, shape, kind):
    """kind: 'conv', 'bn_w', 'bn_b', 'mean', 'var', 'lin_w', 'lin_b'. Same formula as the C test."""
    n = 1
    for d in shape:
        n *= d
    seed = fnv1a(name)
    fan_in = 1
    for d in shape[1:]:
        fan_in *= d
    vals = [unit(i, seed) for i in range(n)]
    if kind in ("conv", "lin_w"):
        scale = math.sqrt(2.0 / fan_in)
        vals = [scale * v for v in vals]
    elif kind == "bn_w":
        vals = [1.0 + 0.1 * v for v in vals]
    elif kind in ("bn_b", "mean", "lin_b"):
        vals = [0.1 * v for v in vals]
    elif kind == "var":
        vals = [1.0 + 0.5 * abs(v) for v in vals]
    return torch.tensor(vals, dtype=torch.float32).reshape(shape)


NUM_LABELS = 10
HIDDEN, DEPTHS = [256, 512, 1024, 2048], [3, 4, 6, 3]


def build():
    P, BUF, blocks = {}, {}, []

    def convbn(prefix, cin, cout, k):
        P[prefix + ".convolution.weight"] = fill(prefix + ".convolution.weight", [cout, cin, k, k], "conv")
        P[prefix + ".normalization.weight"] = fill(prefix + ".normalization.weight", [cout], "bn_w")
        P[prefix + ".normalization.bias"] = fill(prefix + ".normalization.bias", [cout], "bn_b")
        BUF[prefix + ".normalization.running_mean"] = fill(prefix + ".normalization.running_mean", [cout], "mean")
        BUF[prefix + ".normalization.running_var"] = fill(prefix + ".normalization.running_var", [cout], "var")

    convbn("resnet.embedder.embedder", 3, 64, 7)
    cin = 64
    for s in range(4):
        for l in range(DEPTHS[s]):
            stride = (1 if s == 0 else 2) if l == 0 else 1
            bin_, out = (cin if l == 0 else HIDDEN[s]), HIDDEN[s]
            pre = "resnet.encoder.stages.%d.layers.%d" % (s, l)
            short = bin_ != out or stride != 1
            if short:
                convbn(pre + ".shortcut", bin_, out, 1)
            mid = out // 4
            convbn(pre + ".layer.0", bin_, mid, 1)
            convbn(pre + ".layer.1", mid, mid, 3)
            convbn(pre + ".layer.2", mid, out, 1)
            blocks.append((pre, stride, short))
        cin = HIDDEN[s]
    P["classifier.1.weight"] = fill("classifier.1.weight", [NUM_LABELS, 2048], "lin_w")
    P["classifier.1.bias"] = fill("classifier.1.bias", [NUM_LABELS], "lin_b")
    return P, BUF, blocks


def run(P, BUF, blocks, training, N, H):
    P = {k: v.double().requires_grad_(True) for k, v in P.items()}
    BUF = {k: v.double() for k, v in BUF.items()}

    def convbn(prefix, x, stride, k, relu):
        y = F.conv2d(x, P[prefix + ".convolution.weight"], None, stride, k // 2)
        y = F.batch_norm(y, BUF[prefix + ".normalization.running_mean"], BUF[prefix + ".normalization.running_var"],
                         P[prefix + ".normalization.weight"], P[prefix + ".normalization.bias"], training, 0.1, 1e-5)
        return F.relu(y) if relu else y

    x = (fill("pixel_values", [N, 3, H, H], "bn_b") * 10.0).double()
    labels = torch.tensor([i % NUM_LABELS for i in range(N)])
    h = F.max_pool2d(convbn("resnet.embedder.embedder", x, 2, 7, True), 3, 2, 1)
    for pre, stride, short in blocks:
        res = convbn(pre + ".shortcut", h, stride, 1, False) if short else h
        y = convbn(pre + ".layer.0", h, 1, 1, True)
        y = convbn(pre + ".layer.1", y, stride, 3, True)
        y = convbn(pre + ".layer.2", y, 1, 1, False)
        h = F.relu(y + res)
    h = F.adaptive_avg_pool2d(h, 1).flatten(1)
    logits = F.linear(h, P["classifier.1.weight"], P["classifier.1.bias"])
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    out = {"logits": logits, "loss": loss.reshape(1)}
    for name, t in P.items():
        g = t.grad
        if g.numel() <= 1024:
            out["grad:" + name] = g
        else:
            flat = g.flatten()
            idx = [(i * 7919 + 13) % flat.numel() for i in range(16)]
            out["gsum:" + name] = flat.sum().reshape(1)
            out["gnorm:" + name] = flat.norm().reshape(1)
            out["gsample:" + name] = flat[idx]
    if training:
        for name, t in BUF.items():
            if "stages.3" in name or "embedder" in name:
                out["buf:" + name] = t
    return out


if __name__ == "__main__":
    P, BUF, blocks = build()
    write_golden("resnet50_eval.txt", run(P, BUF, blocks, False, 2, 64))
    write_golden("resnet50_train.txt", run(P, BUF, blocks, True, 2, 96))
