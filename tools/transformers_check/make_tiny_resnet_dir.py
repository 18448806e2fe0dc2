#!/usr/bin/python3
"""Writes a small ResNet model directory in transformers' layout (config.json, preprocessor_config.json,
model.safetensors with transformers' weight names, random weights), with Debian's torch and no transformers.

    /usr/bin/python3 tools/transformers_check/make_tiny_resnet_dir.py OUT

lathe trains from it with --pretrained, and the result is small enough to carry to a machine that has
transformers (run_checks.sh), where ResNetForImageClassification.from_pretrained must load lathe's output.
The architecture is transformers' bottleneck ResNet with small widths; every code path (names, config fields,
shortcuts, strides) is the one ResNet-50 uses."""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from check_transformers_load import expected_names  # noqa: E402


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        b = t.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    labels = ["cat", "dog", "bird"]
    cfg = {"architectures": ["ResNetForImageClassification"], "model_type": "resnet", "num_channels": 3,
           "embedding_size": 16, "hidden_sizes": [32, 64, 128, 256], "depths": [1, 2, 1, 1],
           "layer_type": "bottleneck", "hidden_act": "relu", "downsample_in_first_stage": False,
           "downsample_in_bottleneck": False, "id2label": {str(i): l for i, l in enumerate(labels)},
           "label2id": {l: i for i, l in enumerate(labels)}}
    torch.manual_seed(7)
    tensors = {}
    for name, shape in expected_names(cfg).items():
        if name.endswith("running_var"):
            tensors[name] = torch.rand(shape) + 0.5
        elif name.endswith("normalization.weight"):
            tensors[name] = torch.rand(shape) + 0.5
        else:
            tensors[name] = torch.randn(shape) * 0.1
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    json.dump({"do_normalize": True, "do_resize": True, "image_mean": [0.485, 0.456, 0.406],
               "image_std": [0.229, 0.224, 0.225], "size": {"height": 28, "width": 28}},
              open(os.path.join(out, "preprocessor_config.json"), "w"), indent=2)
    print("wrote %s (%d tensors)" % (out, len(tensors)))


if __name__ == "__main__":
    main()
