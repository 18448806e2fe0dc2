#!/usr/bin/env python3
"""Checks a lathe image-classification output folder with the real libraries its users will read it with:
transformers (from_pretrained, strict: no missing or unexpected weights), TensorBoard's own event reader, and
scikit-learn's metric definitions. Run where those are installed (not in CI: Debian packages none of them).

    python3 tools/transformers_check/check_outputs.py OUTPUT --predictions P.jsonl --images IMG... --evaluation E.json

P.jsonl is `lathe predict --model OUTPUT IMG...` and E.json `lathe evaluate --model OUTPUT ...`, both made
where lathe runs. Exits non-zero on the first disagreement."""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F


def check_transformers(out, images, predictions):
    from PIL import Image
    from transformers import ResNetForImageClassification
    import transformers
    model, info = ResNetForImageClassification.from_pretrained(out, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, "from_pretrained reported %s" % bad
    model.eval()
    cfg = json.load(open(os.path.join(out, "config.json")))
    pre = json.load(open(os.path.join(out, "preprocessor_config.json")))
    size = cfg["lathe"]["input_size"]
    mean = torch.tensor(pre["image_mean"])[:, None, None]
    std = torch.tensor(pre["image_std"])[:, None, None]
    worst = 0.0
    for path, line in zip(images, open(predictions)):
        img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(img).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        with torch.no_grad():
            p = torch.softmax(model(pixel_values=(x - mean) / std).logits, -1)[0]
        ours = json.loads(line)
        order = [e["label"] for e in ours]
        theirs = sorted(((p[i].item(), model.config.id2label[i]) for i in range(len(p))), key=lambda t: -t[0])
        assert order[0] == theirs[0][1], (path, order[0], theirs[0])
        for e in ours:
            worst = max(worst, abs(e["score"] - p[model.config.label2id[e["label"]]].item()))
    print("transformers %s: from_pretrained(%s) loaded every weight, none missing or unexpected; "
          "%d images, max |score difference| vs lathe predict %.2e" % (transformers.__version__, out, len(images), worst))
    assert worst < 1e-4


def check_tensorboard(out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(os.path.join(out, "tensorboard"), size_guidance={"scalars": 0})
    ea.Reload()
    tags = ea.Tags()["scalars"]
    state = json.load(open(os.path.join(out, "trainer_state.json")))
    compared = 0
    for entry in state["log_history"]:
        for key, tag in (("loss", "train/loss"), ("learning_rate", "train/learning_rate"),
                         ("eval_accuracy", "eval/accuracy"), ("eval_f1", "eval/f1")):
            if key not in entry:
                continue
            assert tag in tags, (tag, tags)
            got = [e.value for e in ea.Scalars(tag) if e.step == entry["step"]]
            assert got and abs(got[0] - entry[key]) <= 1e-6 * max(1.0, abs(entry[key])), (tag, entry["step"], got, entry[key])
            compared += 1
    assert compared > 0
    print("tensorboard: read %d scalar tags (%s); %d values equal trainer_state.json's log_history"
          % (len(tags), ", ".join(sorted(tags)), compared))


def check_metrics(evaluation):
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support
    e = json.load(open(evaluation))
    cm = np.array(e["confusion_matrix"]["matrix"])
    y_true = np.concatenate([np.full(cm[i].sum(), i) for i in range(len(cm))])
    y_pred = np.concatenate([np.repeat(np.arange(len(cm)), cm[i]) for i in range(len(cm))])
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    want = {"accuracy": accuracy_score(y_true, y_pred), "precision": p, "recall": r, "f1": f}
    for k, v in want.items():
        assert abs(e[k] - v) < 1e-9, (k, e[k], v)
    pc, rc, fc, sc = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
    for i, name in enumerate(e["confusion_matrix"]["labels"]):
        got = e["per_class"][name]
        assert abs(got["precision"] - pc[i]) < 1e-9 and abs(got["recall"] - rc[i]) < 1e-9
        assert abs(got["f1"] - fc[i]) < 1e-9 and got["support"] == sc[i], (name, got)
    print("scikit-learn: accuracy and macro precision/recall/f1 and every per-class value equal lathe evaluate's (%s)"
          % ", ".join("%s %.4f" % kv for kv in want.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("output")
    ap.add_argument("--predictions", required=True)
    ap.add_argument("--images", nargs="+", required=True)
    ap.add_argument("--evaluation", required=True)
    a = ap.parse_args()
    check_transformers(a.output, a.images, a.predictions)
    check_tensorboard(a.output)
    check_metrics(a.evaluation)
    print("ALL CHECKS PASSED")


if __name__ == "__main__":
    sys.exit(main())
