#!/usr/bin/env python3
"""Trains transformers' ResNet-50 on Fashion-MNIST with lathe's exact training recipe, in PyTorch, to choose
learning rate and batch size for the README's quality bar without spending an hour of CPU per try.

    python3 tools/fm_recipe_sweep.py --data /usr/share/datasets/fashion-mnist --lr 1e-3 --batch 32 [--device cuda]

The recipe is lathe's (algorithms/tasks/cls_train.c), which is the Hugging Face Trainer's default: splits as
tools/prepare_fashion_mnist.py makes them (validation = the last 600 training images of each class), images
28x28 grayscale replicated to RGB, scaled to [0,1] and normalized with the ImageNet mean/std, ResNet-50 as
transformers initializes it (Kaiming-normal fan-out convolutions, BN 1/0, PyTorch's default linear), AdamW
(betas 0.9/0.999, eps 1e-8, no weight decay), a linear decay of the learning rate to 0 without warmup,
gradient clipping at global norm 1.0, a reshuffle every epoch, the last partial batch kept, 3 epochs,
evaluation in eval mode (running statistics). Prints validation accuracy per epoch and test accuracy.
Run where transformers is installed (not in CI); lathe itself must then confirm the chosen recipe."""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def splits(root, val_per_class):
    xtr = read_idx(os.path.join(root, "train-images-idx3-ubyte.gz"))
    ytr = read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz"))
    xte = read_idx(os.path.join(root, "t10k-images-idx3-ubyte.gz"))
    yte = read_idx(os.path.join(root, "t10k-labels-idx1-ubyte.gz"))
    val = np.zeros(len(ytr), dtype=bool)
    for c in range(10):
        val[np.nonzero(ytr == c)[0][-val_per_class:]] = True
    return (xtr[~val], ytr[~val]), (xtr[val], ytr[val]), (xte, yte)


def to_input(x, device):
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    t = torch.from_numpy(np.array(x)).to(device).float().div_(255.0).unsqueeze(1).expand(-1, 3, -1, -1)
    return ((t - mean) / std).contiguous()


def accuracy(model, x, y, batch):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            correct += (model(x[i:i + batch]).logits.argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return correct / len(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images only (smoke test)")
    # recipe changes beyond the Trainer's defaults, to see what would reach the bar
    ap.add_argument("--hflip", action="store_true", help="random horizontal flips of training images")
    ap.add_argument("--crop-pad", type=int, default=0, help="random crops after zero-padding by N pixels")
    ap.add_argument("--zero-init-residual", action="store_true", help="last BN gamma of each block = 0")
    ap.add_argument("--warmup-ratio", type=float, default=0.0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(a.seed)
    from transformers import ResNetConfig, ResNetForImageClassification

    (xtr, ytr), (xva, yva), (xte, yte) = splits(a.data, 600)
    if a.limit:
        xtr, ytr = xtr[:a.limit], ytr[:a.limit]
    dev = torch.device(a.device)
    xtr, xva, xte = to_input(xtr, dev), to_input(xva, dev), to_input(xte, dev)
    ytr, yva, yte = (torch.from_numpy(y.astype(np.int64)).to(dev) for y in (ytr, yva, yte))
    model = ResNetForImageClassification(ResNetConfig(num_labels=10)).to(dev)
    if a.zero_init_residual:
        for name, mod in model.named_modules():
            if name.endswith("layer.2.normalization"):
                torch.nn.init.zeros_(mod.weight)
    decay = [p for n_, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n_, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    n = len(ytr)
    steps_per_epoch = (n + a.batch - 1) // a.batch
    total = steps_per_epoch * a.epochs
    warm = int(a.warmup_ratio * total + 0.999999)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / max(1, warm) if s < warm else max(0.0, (total - s) / max(1, total - warm)))
    g = torch.Generator(device="cpu").manual_seed(a.seed)
    t0 = time.time()
    tag = "lr=%g batch=%d seed=%d%s%s%s%s%s%s" % (a.lr, a.batch, a.seed, " hflip" if a.hflip else "",
                                               " crop_pad=%d" % a.crop_pad if a.crop_pad else "",
                                               " zero_init" if a.zero_init_residual else "",
                                               " warmup=%g" % a.warmup_ratio if a.warmup_ratio else "",
                                               " wd=%g" % a.weight_decay if a.weight_decay else "",
                                               " ls=%g" % a.label_smoothing if a.label_smoothing else "")
    for epoch in range(a.epochs):
        perm = torch.randperm(n, generator=g).to(dev)
        loss_sum = 0.0
        for i in range(0, n, a.batch):
            idx = perm[i:i + a.batch]
            x = xtr[idx]
            if a.hflip:
                flip = torch.rand(len(idx), device=dev) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
            if a.crop_pad:
                p, hw = a.crop_pad, x.shape[-1]
                x = F.pad(x, (p, p, p, p), value=0.0)
                dx, dy = torch.randint(0, 2 * p + 1, (2,)).tolist()  # one offset per batch: cheap, enough to test
                x = x[:, :, dy:dy + hw, dx:dx + hw]
            loss = F.cross_entropy(model(x).logits, ytr[idx], label_smoothing=a.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_sum += loss.detach()
        print("%s epoch %d train_loss %.4f val_acc %.4f (%.0f s)" %
              (tag, epoch + 1, float(loss_sum) / steps_per_epoch, accuracy(model, xva, yva, 256), time.time() - t0),
              flush=True)
    print("RESULT %s test_acc %.4f val_acc %.4f time %.0f s" %
          (tag, accuracy(model, xte, yte, 256), accuracy(model, xva, yva, 256), time.time() - t0), flush=True)


if __name__ == "__main__":
    main()
