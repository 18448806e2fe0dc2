"""Golden values for tests/test_loss.c and tests/test_optim.c: cross-entropy (2D and 4D, class weights,
ignore_index), L1, generalized IoU (torchvision's formula in plain torch, differentiated by autograd), and
five AdamW steps with LambdaLR warmup/decay and clip_grad_norm_ as the Hugging Face Trainer runs them.

Run: /usr/bin/python3 tools/golden/loss_optim.py  (writes tests/golden/loss_optim.txt)"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from golden_io import write_golden  # noqa: E402

torch.manual_seed(0)
out = {}


def ce_case(name, logits, target, weight, ignore_index, dloss):
    x = logits.clone().requires_grad_(True)
    loss = F.cross_entropy(x, target.long(), weight=weight, ignore_index=ignore_index)
    (loss * dloss).backward()
    out[name + "_logits"] = logits
    out[name + "_target"] = target
    if weight is not None:
        out[name + "_weight"] = weight
    out[name + "_dloss"] = torch.tensor([dloss])
    out[name + "_loss"] = loss.reshape(1)
    out[name + "_dlogits"] = x.grad


# (N, C) with one ignored row, with and without class weights
lg = torch.randn(5, 7) * 2
tg = torch.tensor([3.0, 0.0, -100.0, 6.0, 3.0])
w7 = torch.rand(7) + 0.2
ce_case("ce2d", lg, tg, None, -100, 0.7)
ce_case("ce2dw", lg, tg, w7, -100, 0.7)
# (N, C, H, W) with 255 (segmentation's ignore label) at several pixels
lg4 = torch.randn(2, 4, 3, 5) * 1.5
tg4 = torch.randint(0, 4, (2, 3, 5)).float()
tg4[0, 1, 2] = 255
tg4[1, 0, 0] = 255
tg4[1, 2, 4] = 255
w4 = torch.rand(4) + 0.2
ce_case("ce4d", lg4, tg4, None, 255, 1.3)
ce_case("ce4dw", lg4, tg4, w4, 255, 1.3)

# L1 with a few exact ties (gradient 0 there, as torch.sign)
pred = torch.randn(3, 5)
targ = torch.randn(3, 5)
targ[0, 1] = pred[0, 1]
targ[2, 3] = pred[2, 3]
p = pred.clone().requires_grad_(True)
t = targ.clone().requires_grad_(True)
l1 = F.l1_loss(p, t)
(l1 * 1.3).backward()
out.update(l1_pred=pred, l1_target=targ, l1_loss=l1.reshape(1), l1_dpred=p.grad, l1_dtarget=t.grad)


def box_area(b):
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def generalized_box_iou_diag(b1, b2):
    """torchvision.ops.generalized_box_iou(b1, b2).diagonal(), with the same ops (torch.max/min, clamp)."""
    area1, area2 = box_area(b1), box_area(b2)
    lt = torch.max(b1[:, :2], b2[:, :2])
    rb = torch.min(b1[:, 2:], b2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = area1 + area2 - inter
    iou = inter / union
    lti = torch.min(b1[:, :2], b2[:, :2])
    rbi = torch.max(b1[:, 2:], b2[:, 2:])
    whi = (rbi - lti).clamp(min=0)
    areai = whi[:, 0] * whi[:, 1]
    return iou - (areai - union) / areai


def rand_boxes(n):
    xy = torch.rand(n, 2) * 4
    wh = torch.rand(n, 2) * 3 + 0.2
    return torch.cat([xy, xy + wh], 1)


a = torch.tensor([
    [0.0, 0.0, 2.0, 2.0],    # overlapping
    [0.0, 0.0, 1.0, 1.0],    # disjoint in x
    [0.0, 0.0, 1.0, 1.0],    # disjoint diagonally
    [0.0, 0.0, 4.0, 4.0],    # b nested inside a
    [0.5, 0.25, 2.5, 3.0],   # identical boxes: every max/min ties
    [0.0, 0.0, 1.0, 2.0],    # touching edges: the intersection width is exactly 0
    [1.0, 0.0, 3.0, 2.0],    # shared left edge
    [1.0, 1.0, 2.0, 2.0],    # a nested inside b
])
b = torch.tensor([
    [1.0, 0.5, 3.0, 2.5],
    [2.0, 0.0, 3.0, 1.5],
    [2.0, 3.0, 3.0, 4.0],
    [1.0, 1.5, 2.5, 3.0],
    [0.5, 0.25, 2.5, 3.0],
    [1.0, 0.5, 2.0, 1.5],
    [1.0, 1.0, 4.0, 3.0],
    [0.0, 0.5, 3.0, 4.0],
])
a = torch.cat([a, rand_boxes(4)])
b = torch.cat([b, rand_boxes(4)])
ga = a.clone().requires_grad_(True)
gb = b.clone().requires_grad_(True)
giou = generalized_box_iou_diag(ga, gb)
dgiou = torch.randn(giou.shape[0])
(giou * dgiou).sum().backward()
out.update(giou_a=a, giou_b=b, giou_out=giou, giou_dout=dgiou, giou_da=ga.grad, giou_db=gb.grad)

# AdamW: three tensors as lt_params lays them out (declaration order): a decayed weight, a no_decay bias,
# and a decayed tensor with lr_scale 0.25. Gradients per step are fixed; their scales put the global norm
# above and below the clipping threshold 1.0.
shapes = [(3, 4), (4,), (5,)]
numel = sum(torch.Size(s).numel() for s in shapes)
init = torch.randn(numel)
grads = torch.randn(5, numel) * torch.tensor([2.0, 0.05, 1.5, 0.1, 3.0]).unsqueeze(1) / numel ** 0.5
out["opt_init"] = init
out["opt_grads"] = grads


def run_adamw(lr, wd, warmup, total, max_norm):
    flat = init.clone()
    params, off = [], 0
    for s in shapes:
        n = torch.Size(s).numel()
        params.append(flat[off:off + n].reshape(s).clone().requires_grad_(True))
        off += n
    groups = [
        {"params": [params[0]], "weight_decay": wd},
        {"params": [params[1]], "weight_decay": 0.0},
        {"params": [params[2]], "weight_decay": wd, "lr": lr * 0.25},
    ]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)

    def lr_lambda(step):  # transformers.get_linear_schedule_with_warmup
        if step < warmup:
            return float(step) / float(max(1, warmup))
        return max(0.0, float(total - step) / float(max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    after, norms = [], []
    for s in range(5):
        off = 0
        for prm in params:
            n = prm.numel()
            prm.grad = grads[s, off:off + n].reshape(prm.shape).clone()
            off += n
        if max_norm > 0:
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, max_norm)))
        else:
            norms.append(float(torch.cat([prm.grad.flatten() for prm in params]).norm()))
        opt.step()
        sched.step()
        after.append(torch.cat([prm.detach().flatten() for prm in params]))
    return torch.stack(after), torch.tensor(norms)


# (lr, weight_decay, warmup, total, max_norm); tests/test_optim.c repeats this table
for tag, cfg in {"A": (1e-2, 0.01, 2, 5, 1.0), "B": (1e-2, 0.0, 2, 5, 1.0), "C": (1e-2, 0.01, 0, 5, 0.0)}.items():
    after, norms = run_adamw(*cfg)
    out["opt%s_params" % tag] = after
    out["opt%s_norms" % tag] = norms

# LambdaLR multipliers of the linear schedule, steps 0..12, for (warmup, total) pairs including the edges
for warmup, total in [(0, 7), (3, 10), (4, 4), (1, 1), (2, 5)]:
    prm = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([prm], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: float(step) / float(max(1, warmup)) if step < warmup
        else max(0.0, float(total - step) / float(max(1, total - warmup))))
    mults = []
    for _ in range(13):
        mults.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    out["sched_w%d_t%d" % (warmup, total)] = torch.tensor(mults, dtype=torch.float64)

write_golden("loss_optim.txt", out)
