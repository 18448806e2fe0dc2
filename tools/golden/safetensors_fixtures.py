"""Writes the safetensors fixtures tests/test_safetensors.c reads, without the safetensors package.

Run with Debian's torch: `/usr/bin/python3 tools/golden/safetensors_fixtures.py`. It writes
  tests/golden/safetensors_mixed.safetensors  F16 (subnormals, +-inf, nan, -0), BF16, F32, F64, I64, I32,
                                              BOOL and U8 tensors, with __metadata__ {"format": "pt"}
  tests/golden/safetensors.txt                those tensors converted to float32 by torch (the expected values)
  tests/golden/safetensors_ref_f32.safetensors  F32 tensors the C writer must reproduce byte for byte
The layout follows the reference writer (huggingface/safetensors, tensor.rs `prepare`): tensors sorted by
descending dtype alignment, then by name; compact JSON with __metadata__ first; the header padded with spaces
to a multiple of 8 bytes.

`--check FILE...` instead reads files (e.g. ones lathe wrote) by the reference reader's rules, with json and
struct only, and loads every tensor with torch; it exits non-zero on the first violation."""
import json
import os
import struct
import sys

import torch

from golden_io import GOLDEN_DIR, write_golden

# The reference's Dtype enum, in increasing alignment order; the writer sorts by it, descending.
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64",
               "I64", "U64"]
DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
              "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
TORCH_DTYPE = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.float16: "F16",
               torch.bfloat16: "BF16", torch.int32: "I32", torch.float32: "F32", torch.float64: "F64",
               torch.int64: "I64"}
FROM_NAME = {v: k for k, v in TORCH_DTYPE.items()}


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
        t = t.view(torch.int16)
    return t.numpy().tobytes()  # little-endian on every host torch runs on here


def serialize(tensors, metadata=None):
    """bytes of a safetensors file holding tensors (dict name -> torch.Tensor), as the reference writes it."""
    items = sorted(tensors.items(), key=lambda kv: (-DTYPE_ORDER.index(TORCH_DTYPE[kv[1].dtype]), kv[0]))
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in items:
        b = raw_bytes(t)
        header[name] = {"dtype": TORCH_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    # serde_json's compact form: no spaces, UTF-8 kept as is
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def deserialize(buf):
    """(metadata, {name: tensor}) from a file image, enforcing the reference reader's rules."""
    assert len(buf) >= 8, "shorter than the 8-byte header length"
    (n,) = struct.unpack("<Q", buf[:8])
    assert n <= 100_000_000 and 8 + n <= len(buf), "bad header length %d" % n
    text = buf[8:8 + n].decode("utf-8")
    assert text.startswith("{"), "header does not start with '{'"

    def no_dups(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), "duplicate keys"
        return dict(pairs)

    header = json.loads(text, object_pairs_hook=no_dups)
    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        assert all(isinstance(v, str) for v in metadata.values()), "non-string metadata value"
    data = buf[8 + n:]
    entries = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    at, out = 0, {}
    for name, info in entries:
        b, e = info["data_offsets"]
        shape = info["shape"]
        assert all(isinstance(d, int) and d >= 0 for d in shape), name
        numel = 1
        for d in shape:
            numel *= d
        assert b == at and e >= b, "tensor %s: gap or overlap" % name
        assert e - b == numel * DTYPE_SIZE[info["dtype"]], "tensor %s: size" % name
        at = e
        raw = bytearray(data[b:e])
        dt = FROM_NAME[info["dtype"]]
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16) if raw else torch.zeros(0, dtype=dt)
        else:
            t = torch.frombuffer(raw, dtype=dt) if raw else torch.zeros(0, dtype=dt)
        out[name] = t.reshape(shape)
    assert at == len(data), "tensors don't cover the data buffer"
    return metadata, out


def f16_bits(bits):
    return torch.tensor(bits, dtype=torch.int32).to(torch.int16).view(torch.float16)


def bf16_bits(bits):
    return torch.tensor(bits, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)


def signed16(bits):
    return [b - 0x10000 if b >= 0x8000 else b for b in bits]


def mixed_tensors():
    # 0, -0, smallest and largest subnormal, -smallest subnormal, smallest normal, 1, -2, 65504, -65504,
    # inf, -inf, nan, 0.333..., 1.5
    half = [0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x0400, 0x3C00, 0xC000, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00,
            0x7E00, 0x3555, 0x3E00]
    # 0, -0, a subnormal (2^-133), 1, -3, inf, -inf, nan, the largest finite, 0.333984375
    brain = [0x0000, 0x8000, 0x0001, 0x3F80, 0xC040, 0x7F80, 0xFF80, 0x7FC0, 0x7F7F, 0x3EAB]
    return {
        "half": f16_bits(signed16(half)).reshape(3, 5),
        "brain": bf16_bits(signed16(brain)).reshape(2, 5),
        "full": torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.75 - 1.0,
        "double": torch.tensor([0.1, -1e300, 1e-50], dtype=torch.float64),
        "bn.num_batches_tracked": torch.tensor(12345, dtype=torch.int64),
        "ints": torch.tensor([-5, 0, 7, 2 ** 24 + 1], dtype=torch.int32),
        "flags": torch.tensor([True, False, True]),
        "bytes": torch.tensor([0, 255], dtype=torch.uint8),
    }


def ref_f32_tensors():
    """Values the C test regenerates: element i of the k-th tensor (in this order) is (i * 3 % 7) - 2.5 + k."""
    specs = [("b.weight", (2, 3)), ("a.bias", (3,)), ("scalar", ()), ("empty", (0, 4)),
             ("odd \"name\"\\ \u00e9\n\x01", (1, 1, 2))]
    out = {}
    for k, (name, shape) in enumerate(specs):
        numel = 1
        for d in shape:
            numel *= d
        vals = [(i * 3 % 7) - 2.5 + k for i in range(numel)]
        out[name] = torch.tensor(vals, dtype=torch.float32).reshape(shape)
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        for path in sys.argv[2:]:
            with open(path, "rb") as f:
                metadata, tensors = deserialize(f.read())
            print("%s: ok, metadata %s, %d tensors" % (path, metadata, len(tensors)))
        return
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    mixed = mixed_tensors()
    files = {"safetensors_mixed.safetensors": serialize(mixed, {"format": "pt"}),
             "safetensors_ref_f32.safetensors": serialize(ref_f32_tensors(), {"format": "pt"})}
    for name, blob in files.items():
        path = os.path.join(GOLDEN_DIR, name)
        with open(path, "wb") as f:
            f.write(blob)
        deserialize(blob)  # the fixture obeys the reader's rules
        print("wrote", path)
    write_golden("safetensors.txt", {k: v.to(torch.float32) for k, v in mixed.items()})


if __name__ == "__main__":
    main()
