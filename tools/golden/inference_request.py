#!/usr/bin/env python3
"""Writes the request fixtures of tests/test_inference.c (standard library only, no torch):

    tests/golden/inference_image.png     a 7 x 5 RGB PNG with a known pixel pattern (pixel (x, y) =
                                         (x * 36, y * 60, (x + y) * 20))
    tests/golden/inference_request.json  the request tools/guide_image_to_request.py (the guide's own
                                         script, verbatim) writes for that PNG

Run: python3 tools/golden/inference_request.py"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
GOLDEN = os.path.join(ROOT, "tests", "golden")


def png_rgb(width, height, pixel):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def main():
    png = png_rgb(7, 5, lambda x, y: (x * 36, y * 60, (x + y) * 20))
    image = os.path.join(GOLDEN, "inference_image.png")
    with open(image, "wb") as f:
        f.write(png)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "guide_image_to_request.py"), image], cwd=tmp,
                       check=True)
        shutil.copy(os.path.join(tmp, "input.json"), os.path.join(GOLDEN, "inference_request.json"))


if __name__ == "__main__":
    main()
