#!/usr/bin/env python3
"""Makes a ResNet-50 model directory with transformers' own save_pretrained (the layout of
microsoft/resnet-50: 1000 labels, ConvNext-style preprocessor_config.json), with random weights and
non-trivial batch-norm statistics, stored as F16 (to carry it back under the device tool's size limit; lathe
reads F16), plus the softmax scores transformers computes for IMAGE (a 224x224 RGB PNG, normalized without a
resize, since lathe resizes to input_size squared and transformers' processor crops).

    python3 tools/transformers_check/make_hf_resnet50.py OUT_DIR IMAGE SCORES.json"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from transformers import ResNetConfig, ResNetForImageClassification


def main():
    out, image, scores = sys.argv[1:4]
    torch.manual_seed(0)
    labels = {i: "class %d, a label with spaces" % i for i in range(1000)}
    model = ResNetForImageClassification(ResNetConfig(num_labels=1000, id2label=labels,
                                                      label2id={v: k for k, v in labels.items()})).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.half().save_pretrained(out)
    json.dump({"crop_pct": 0.875, "do_normalize": True, "do_resize": True, "image_processor_type": "ConvNextImageProcessor",
               "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 3,
               "size": {"shortest_edge": 224}}, open(os.path.join(out, "preprocessor_config.json"), "w"), indent=2)
    try:
        ref = ResNetForImageClassification.from_pretrained(out, dtype=torch.float32).eval()
    except TypeError:
        ref = ResNetForImageClassification.from_pretrained(out, torch_dtype=torch.float32).eval()
    img = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        p = torch.softmax(ref(pixel_values=(x - mean) / std).logits.float(), -1)[0]
    order = torch.argsort(p, descending=True).tolist()
    json.dump([{"score": p[i].item(), "label": labels[i]} for i in order], open(scores, "w"))
    print("wrote %s: %s; top score %.4f (%s)" % (out, sorted(os.listdir(out)), p[order[0]].item(), labels[order[0]]))


if __name__ == "__main__":
    main()
