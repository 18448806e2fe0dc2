#!/usr/bin/env python3
"""Writes a tiny image-classification data set for the end-to-end tests: CLASSES x N PNG images of
SIZE x SIZE in train/ and validation/ (the algorithms guide's layout), using only the standard library.
Each class has its own colour plus noise, so a model can learn something in a step or two.

usage: make_dataset.py DIR [--classes 3] [--per-class 4] [--size 16] [--seed 1]"""
import argparse
import os
import random
import struct
import zlib


def png(width, height, rows):
    """rows: list of bytes, each width*3 RGB bytes."""
    raw = b"".join(b"\x00" + r for r in rows)

    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    base = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (200, 200, 40), (160, 40, 200)]
    for split, n in (("train", a.per_class), ("validation", max(1, a.per_class // 2))):
        for c in range(a.classes):
            d = os.path.join(a.dir, split, "class_%d" % c)
            os.makedirs(d, exist_ok=True)
            r0, g0, b0 = base[c % len(base)]
            for i in range(n):
                rows = []
                for _ in range(a.size):
                    row = bytearray()
                    for _ in range(a.size):
                        for v in (r0, g0, b0):
                            row.append(max(0, min(255, v + rnd.randint(-30, 30))))
                    rows.append(bytes(row))
                with open(os.path.join(d, "img_%d.png" % i), "wb") as f:
                    f.write(png(a.size, a.size, rows))


if __name__ == "__main__":
    main()
