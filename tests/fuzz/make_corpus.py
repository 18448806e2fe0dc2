"""Writes the seed corpus for fuzz_safetensors (and for test_safetensors' corpus replay): small files, valid_*
ones that must parse and bad_* ones that must be rejected. Plain python3, no torch:
`python3 tests/fuzz/make_corpus.py`."""
import json
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def image(header, data, pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def t(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


def main():
    os.makedirs(HERE, exist_ok=True)
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
    f16 = struct.pack("<3H", 0x3C00, 0x8001, 0x7E00)
    files = {
        "valid_empty": image({}, b""),
        "valid_metadata_only": image({"__metadata__": {"format": "pt"}}, b""),
        "valid_small": image({"__metadata__": {"format": "pt"}, "w": t("F32", [2, 2], 0, 16),
                              "h": t("F16", [3], 16, 22), "n": t("I64", [], 22, 30)},
                             f32 + f16 + struct.pack("<q", 7)),
        "valid_bf16_zero_size": image({"b": t("BF16", [2], 0, 4), "z": t("F32", [0, 3], 4, 4)},
                                      struct.pack("<2H", 0x3F80, 0xFF80)),
        "valid_unpadded": image({"u": t("U8", [3], 0, 3)}, b"\x01\x02\x03", pad=False),
        "bad_gap": image({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, bytes(12)),
        "bad_overlap": image({"a": t("F32", [2], 0, 8), "b": t("F32", [1], 4, 8)}, bytes(8)),
        "bad_dtype": image({"a": t("F33", [1], 0, 4)}, bytes(4)),
        "bad_size": image({"a": t("F32", [3], 0, 8)}, bytes(8)),
        "bad_duplicate": image(b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                               b'"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\x00\x00"),
        "bad_metadata": image({"__metadata__": {"format": 1}}, b""),
        "bad_truncated": image({"w": t("F32", [2, 2], 0, 16)}, f32)[:-3],
        "bad_length": struct.pack("<Q", 1 << 40) + b"{}",
        "bad_utf8": image(b'{"\xff":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\x00"),
    }
    for name, blob in files.items():
        with open(os.path.join(HERE, name + ".safetensors"), "wb") as f:
            f.write(blob)
    print("wrote %d files to %s" % (len(files), HERE))


if __name__ == "__main__":
    main()
