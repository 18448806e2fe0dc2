#!/usr/bin/env python3
"""Turns Debian's dataset-fashion-mnist package into the algorithms guide's classification layout.

    folder/train/<label>/<index>.png        (from train-*, minus the validation share)
    folder/validation/<label>/<index>.png   (the last --validation-per-class images of each class in train-*)
    folder/test/<label>/<index>.png         (from t10k-*)

Only the standard library: the IDX files are gzip'd big-endian arrays, the PNGs are written by hand
(8-bit grayscale, one zlib stream). --per-class N limits the train split to N images of each class (and the
test split to N // 5), for a quick first run."""
import argparse
import gzip
import os
import struct
import sys
import zlib

SOURCE = "/usr/share/datasets/fashion-mnist"
# The data set's own class names, made safe as folder names.
LABELS = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return dims, data[4 + 4 * ndim:]


def png_gray(width, height, pixels):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))


def write_split(out, split, images, labels, indices):
    for label in LABELS:
        os.makedirs(os.path.join(out, split, label), exist_ok=True)
    for i in indices:
        img = images[i * 784:(i + 1) * 784]
        with open(os.path.join(out, split, LABELS[labels[i]], "%05d.png" % i), "wb") as f:
            f.write(png_gray(28, 28, img))
    return len(indices)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="destination folder (created)")
    ap.add_argument("--source", default=SOURCE, help="folder with the *-ubyte.gz files (default %(default)s)")
    ap.add_argument("--per-class", type=int, default=0, help="train images per class (0 = all)")
    ap.add_argument("--validation-per-class", type=int, default=600, help="validation images per class")
    args = ap.parse_args()
    try:
        (n_train, _, _), train_images = read_idx(os.path.join(args.source, "train-images-idx3-ubyte.gz"))
        _, train_labels = read_idx(os.path.join(args.source, "train-labels-idx1-ubyte.gz"))
        (n_test, _, _), test_images = read_idx(os.path.join(args.source, "t10k-images-idx3-ubyte.gz"))
        _, test_labels = read_idx(os.path.join(args.source, "t10k-labels-idx1-ubyte.gz"))
    except OSError as e:
        sys.exit("prepare_fashion_mnist: %s (install it with: apt-get install dataset-fashion-mnist)" % e)
    by_class = [[i for i in range(n_train) if train_labels[i] == c] for c in range(10)]
    train, val = [], []
    for idx in by_class:
        v = args.validation_per_class
        val += idx[len(idx) - v:]
        rest = idx[:len(idx) - v]
        train += rest[:args.per_class] if args.per_class else rest
    test_by_class = [[i for i in range(n_test) if test_labels[i] == c] for c in range(10)]
    test = []
    for idx in test_by_class:
        test += idx[:max(1, args.per_class // 5)] if args.per_class else idx
    counts = (write_split(args.out, "train", train_images, train_labels, sorted(train)),
              write_split(args.out, "validation", train_images, train_labels, sorted(val)),
              write_split(args.out, "test", test_images, test_labels, sorted(test)))
    print("fashion-mnist: %d train, %d validation, %d test images in %s" % (counts + (args.out,)))


if __name__ == "__main__":
    main()
