#!/usr/bin/python3
"""PyTorch's side of the ResNet-50 benchmark: the same network as lathe's (transformers' ResNet-50 layout,
v1.5 bottlenecks), timed with Debian's python3-torch on 2 threads. Prints one JSON line per measurement.

    /usr/bin/python3 bench/pytorch_resnet50.py train28|infer224|train224 [--steps N]

Each mode runs in its own process so the peak resident memory (ru_maxrss) belongs to that mode alone."""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBN(nn.Module):
    def __init__(self, cin, cout, k, stride, relu):
        super().__init__()
        self.convolution = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.normalization = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x):
        x = self.normalization(self.convolution(x))
        return F.relu(x) if self.relu else x


class Bottleneck(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        mid = cout // 4
        self.shortcut = ConvBN(cin, cout, 1, stride, False) if cin != cout or stride != 1 else nn.Identity()
        self.layer = nn.Sequential(ConvBN(cin, mid, 1, 1, True), ConvBN(mid, mid, 3, stride, True),
                                   ConvBN(mid, cout, 1, 1, False))

    def forward(self, x):
        return F.relu(self.layer(x) + self.shortcut(x))


class ResNet50(nn.Module):
    def __init__(self, num_labels):
        super().__init__()
        self.stem = ConvBN(3, 64, 7, 2, True)
        blocks, cin = [], 64
        for s, (cout, depth) in enumerate(zip([256, 512, 1024, 2048], [3, 4, 6, 3])):
            for i in range(depth):
                blocks.append(Bottleneck(cin if i == 0 else cout, cout, (1 if s == 0 else 2) if i == 0 else 1))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(2048, num_labels)

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        x = self.blocks(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train28", "infer224", "train224"])
    ap.add_argument("--steps", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    size, batch, train = {"train28": (28, 16, True), "infer224": (224, 1, False), "train224": (224, 16, True)}[args.mode]
    steps = args.steps or {"train28": 20, "infer224": 20, "train224": 4}[args.mode]
    model = ResNet50(10)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 10, (batch,))
    if train:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                model(x)
    step()  # warm-up
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({"impl": "pytorch " + torch.__version__, "mode": args.mode, "batch": batch, "size": size,
                      "ms_per_step": median * 1e3, "images_per_second": batch / median,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "ms_min": times[0] * 1e3}))


if __name__ == "__main__":
    main()
