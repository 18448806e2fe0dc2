#!/usr/bin/python3
"""Checks that a lathe image-classification output folder is a working transformers model directory.

    /usr/bin/python3 tools/check_transformers_load.py MODEL_DIR IMAGE [--lathe build/lathe]

With transformers installed it runs ResNetForImageClassification.from_pretrained(MODEL_DIR) and compares its
softmax scores on IMAGE with `lathe predict`. Without transformers (Debian has no package for it and this
project's machines reach no PyPI) it does the same with a plain-PyTorch replica of transformers' ResNet that
loads model.safetensors strictly by transformers' state-dict names: every name and shape must match, none may
be missing or left over. The image is preprocessed as lathe does (bilinear resize of the float image,
align_corners=False, then the preprocessor's mean/std)."""
import argparse
import json
import os
import struct
import subprocess
import sys
import zlib

import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        if e["dtype"] == "I64":  # batch norms' num_batches_tracked, as PyTorch saves them
            assert name.endswith(".num_batches_tracked") and e["shape"] == [], (name, e)
            out[name] = torch.tensor(struct.unpack("<q", data[b:end])[0])
            continue
        assert e["dtype"] == "F32", (name, e["dtype"])
        out[name] = torch.frombuffer(bytearray(data[b:end]), dtype=torch.float32).reshape(e["shape"])
    return out, header.get("__metadata__", {})


def expected_names(cfg):
    names = {}

    def convbn(p, cin, cout, k):
        names[p + ".convolution.weight"] = [cout, cin, k, k]
        for s in ("weight", "bias", "running_mean", "running_var"):
            names[p + ".normalization." + s] = [cout]

    convbn("resnet.embedder.embedder", cfg["num_channels"], cfg["embedding_size"], 7)
    cin = cfg["embedding_size"]
    for s, (cout, depth) in enumerate(zip(cfg["hidden_sizes"], cfg["depths"])):
        for l in range(depth):
            stride = (2 if cfg.get("downsample_in_first_stage") else 1) if s == 0 else 2
            stride = stride if l == 0 else 1
            bin_ = cin if l == 0 else cout
            p = "resnet.encoder.stages.%d.layers.%d" % (s, l)
            if bin_ != cout or stride != 1:
                convbn(p + ".shortcut", bin_, cout, 1)
            mid = cout // 4
            convbn(p + ".layer.0", bin_, mid, 1)
            convbn(p + ".layer.1", mid, mid, 3)
            convbn(p + ".layer.2", mid, cout, 1)
        cin = cout
    names["classifier.1.weight"] = [len(cfg["id2label"]), cin]
    names["classifier.1.bias"] = [len(cfg["id2label"])]
    return names


def replica_forward(W, cfg, x):
    def convbn(p, x, stride, k, relu):
        y = F.conv2d(x, W[p + ".convolution.weight"], None, stride, k // 2)
        y = F.batch_norm(y, W[p + ".normalization.running_mean"], W[p + ".normalization.running_var"],
                         W[p + ".normalization.weight"], W[p + ".normalization.bias"], False, 0.1, 1e-5)
        return F.relu(y) if relu else y

    h = F.max_pool2d(convbn("resnet.embedder.embedder", x, 2, 7, True), 3, 2, 1)
    cin = cfg["embedding_size"]
    for s, (cout, depth) in enumerate(zip(cfg["hidden_sizes"], cfg["depths"])):
        for l in range(depth):
            stride = ((2 if cfg.get("downsample_in_first_stage") else 1) if s == 0 else 2) if l == 0 else 1
            p = "resnet.encoder.stages.%d.layers.%d" % (s, l)
            res = convbn(p + ".shortcut", h, stride, 1, False) if (p + ".shortcut.convolution.weight") in W else h
            y = convbn(p + ".layer.0", h, 1, 1, True)
            y = convbn(p + ".layer.1", y, stride, 3, True)
            y = convbn(p + ".layer.2", y, 1, 1, False)
            h = F.relu(y + res)
    h = F.adaptive_avg_pool2d(h, 1).flatten(1)
    return F.linear(h, W["classifier.1.weight"], W["classifier.1.bias"])


def load_png(path):
    """8-bit gray or RGB PNGs only (what tools/prepare_fashion_mnist.py writes), without PIL."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (0, 2), "only 8-bit gray/RGB PNGs"
            ch = 1 if ctype == 0 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * ch
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b, c = prev[i], (prev[i - ch] if i >= ch else 0)
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    t = torch.tensor(list(b"".join(rows)), dtype=torch.float32).reshape(h, w, ch).permute(2, 0, 1)
    return t.expand(3, h, w) if ch == 1 else t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("image")
    ap.add_argument("--lathe", default="build/lathe")
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    pre = json.load(open(os.path.join(a.model, "preprocessor_config.json")))
    size = pre["size"]["height"]
    x = load_png(a.image)[None] / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean, std = torch.tensor(pre["image_mean"])[:, None, None], torch.tensor(pre["image_std"])[:, None, None]
    x = (x - mean) / std
    try:
        from transformers import ResNetForImageClassification
        model = ResNetForImageClassification.from_pretrained(a.model).eval()
        with torch.no_grad():
            logits = model(pixel_values=x).logits
        how = "transformers " + __import__("transformers").__version__
    except ImportError:
        W, meta = read_safetensors(os.path.join(a.model, "model.safetensors"))
        assert meta.get("format") == "pt", meta
        want = expected_names(cfg)
        for k in [k for k in want if k.endswith(".running_var")]:
            want[k[:-len("running_var")] + "num_batches_tracked"] = []
        missing, extra = sorted(set(want) - set(W)), sorted(set(W) - set(want))
        assert not missing and not extra, ("missing", missing[:5], "unexpected", extra[:5])
        for k, shape in want.items():
            assert list(W[k].shape) == shape, (k, list(W[k].shape), shape)
        with torch.no_grad():
            logits = replica_forward(W, cfg, x)
        how = "a plain-PyTorch replica of transformers' ResNet (transformers is not installed)"
    ref = torch.softmax(logits, -1)[0]
    out = subprocess.run([a.lathe, "predict", "--model", a.model, a.image], check=True, capture_output=True, text=True)
    ours = {e["label"]: e["score"] for e in json.loads(out.stdout.splitlines()[0])}
    worst = max(abs(ours[cfg["id2label"][str(i)]] - ref[i].item()) for i in range(len(ref)))
    print("loaded with %s; %d labels; max |score difference| vs lathe predict: %.2e" % (how, len(ref), worst))
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
