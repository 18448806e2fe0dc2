#!/usr/bin/env python3
"""Prints the scalars in TensorBoard event files, with no tensorboard/protobuf package.

Usage: tools/tb_read.py PATH...   (event files, or directories searched for events.out.tfevents.*)
Output: one line per scalar, "file  wall_time  step  tag  value"; both CRCs of every record are checked and a
bad record is reported (and reading that file stops, as TensorBoard does)."""
import os
import struct
import sys


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(blob):
    pos = 0
    while pos < len(blob):
        if len(blob) - pos < 12:
            raise ValueError("truncated record header at byte %d" % pos)
        header = blob[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", blob[pos + 8:pos + 12])
        if hcrc != masked_crc(header):
            raise ValueError("bad length CRC at byte %d" % pos)
        data = blob[pos + 12:pos + 12 + length]
        if len(data) != length or len(blob) < pos + 16 + length:
            raise ValueError("truncated record at byte %d" % pos)
        (dcrc,) = struct.unpack("<I", blob[pos + 12 + length:pos + 16 + length])
        if dcrc != masked_crc(data):
            raise ValueError("bad data CRC at byte %d" % pos)
        yield data
        pos += 16 + length


def _varint(buf, pos):
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def fields(buf):
    """Yields (field number, wire type, value): int for varints, bytes for fixed and length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield field, wire, value


def scalars(event):
    wall, step, out = 0.0, 0, []
    for field, wire, value in fields(event):
        if field == 1 and wire == 1:
            (wall,) = struct.unpack("<d", value)
        elif field == 2 and wire == 0:
            step = value - (1 << 64) if value >= 1 << 63 else value
        elif field == 5 and wire == 2:
            for f, w, v in fields(value):
                if f != 1 or w != 2:
                    continue
                tag, val = None, None
                for vf, vw, vv in fields(v):
                    if vf == 1 and vw == 2:
                        tag = vv.decode("utf-8", "replace")
                    elif vf == 2 and vw == 5:
                        (val,) = struct.unpack("<f", vv)
                if tag is not None and val is not None:
                    out.append((tag, val))
    return wall, step, out


def event_files(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                for n in sorted(names):
                    if "tfevents" in n:
                        yield os.path.join(root, n)
        else:
            yield p


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    status = 0
    for path in event_files(argv[1:]):
        with open(path, "rb") as f:
            blob = f.read()
        try:
            for data in records(blob):
                wall, step, values = scalars(data)
                for tag, val in values:
                    print("%s\t%.3f\t%d\t%s\t%.9g" % (path, wall, step, tag, val))
        except (ValueError, IndexError, struct.error) as e:
            print("%s: %s" % (path, e), file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
