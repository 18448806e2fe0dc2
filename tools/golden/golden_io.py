"""Writes reference tensors in the text format tests/harness/golden.h reads.

Run the generators with Debian's python3-torch (never in CI): `/usr/bin/python3 tools/golden/<family>.py`.
Each writes tests/golden/<family>.txt. Keep the shapes small: the files are committed."""
import os

import torch

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden")


def write_golden(filename, tensors):
    """tensors: dict name -> torch.Tensor (any dtype; written as float32)."""
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    path = os.path.join(GOLDEN_DIR, filename)
    with open(path, "w") as f:
        for name, t in tensors.items():
            t = t.detach().to(torch.float32).contiguous()
            dims = " ".join(str(d) for d in t.shape)
            vals = " ".join("%.9g" % v for v in t.flatten().tolist())
            f.write("%s %d %s %s\n" % (name, t.dim(), dims, vals) if t.dim() else "%s 0 %s\n" % (name, vals))
    print("wrote", path)
