#!/usr/bin/env python3
"""Interoperability of weft's safetensors files with the Python safetensors package.

usage: check_safetensors.py ST_TOOL

1. weft writes a file (st_tool write); safetensors (the reference Rust parser, which also
   checks that offsets are contiguous and the header well formed) opens it, and every value,
   dtype, shape and metadata entry is compared with what st_tool wrote.
2. safetensors writes a file (no crc32/ keys); weft reads it (st_tool dump) and the values
   are compared.

Exit status 77 (skipped, for meson) when numpy or safetensors is not installed.
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e}")
    sys.exit(77)


def bf16_to_f32(u16):
    return np.frombuffer(struct.pack("<%dI" % len(u16), *[int(u) << 16 for u in u16]), dtype="<f4")


def expected_weft_file():
    f64 = np.array([i * 0.5 - 1.0 + 1e-9 * i for i in range(6)], dtype=np.float64).reshape(2, 3)
    return {
        "f64": f64,
        "f32": np.array([0.1, -2.5, 3.4e38], dtype=np.float32),
        "f16": np.array([0x3C00, 0xC000, 0x7BFF, 0x3555], dtype=np.uint16).view(np.float16).reshape(2, 2),
        "bf16": ("BF16", [3], [0x3F80, 0xC040, 0x4049]),
        "i64": np.array([-9007199254740993, 4611686018427387904], dtype=np.int64),
        "i32": np.array([-2147483648, -1, 0, 2147483647], dtype=np.int32).reshape(2, 2),
        "u8": np.array([0, 1, 127, 128, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(7.25, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


def check_weft_written(tool, tmp):
    path = os.path.join(tmp, "weft.safetensors")
    subprocess.run([tool, "write", path], check=True)
    exp = expected_weft_file()
    with safe_open(path, framework="numpy") as f:
        keys = set(f.keys())
        assert keys == set(exp), f"keys {sorted(keys)} != {sorted(exp)}"
        meta = f.metadata()
        assert meta["epoch"] == "3", meta
        assert meta["note"] == 'h\u00e9llo "quoted"\n', repr(meta["note"])
        for name in exp:
            assert f"crc32/{name}" in meta, f"no crc32/{name} in metadata"
            assert len(meta[f"crc32/{name}"]) == 8
        for name, want in exp.items():
            sl = f.get_slice(name)
            if isinstance(want, tuple):  # bf16: numpy has no bfloat16; check bytes by hand
                dtype, shape, bits = want
                assert sl.get_dtype() == dtype, (name, sl.get_dtype())
                assert list(sl.get_shape()) == shape, (name, sl.get_shape())
                continue
            got = f.get_tensor(name)
            assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
            assert got.shape == want.shape, (name, got.shape, want.shape)
            assert np.array_equal(got, want), (name, got, want)
    # BF16 bytes, and the CRCs, checked against the raw file
    with open(path, "rb") as fh:
        raw = fh.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0, "header not padded to 8 bytes"
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    import zlib

    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        crc = int(header["__metadata__"][f"crc32/{name}"], 16)
        assert zlib.crc32(data[b:e]) == crc, f"crc of {name}"
        itemsize = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "U8": 1, "BOOL": 1}[info["dtype"]]
        assert b % itemsize == 0, f"{name} misaligned at {b}"
    # the header checksum: CRC-32 of the length bytes and the header, its own digits as zeros
    tok = b'"weft/header_crc32":"'
    hdr = raw[8 : 8 + n]
    assert hdr.count(tok) == 1, "weft/header_crc32 must appear once"
    pos = hdr.index(tok) + len(tok)
    zeroed = raw[:8] + hdr[:pos] + b"00000000" + hdr[pos + 8 :]
    assert zlib.crc32(zeroed) == int(hdr[pos : pos + 8], 16), "header crc"
    assert header["__metadata__"]["weft/safetensors"] == "2"
    ends = sorted((i["data_offsets"][0], i["data_offsets"][1]) for k, i in header.items() if k != "__metadata__")
    assert max(e for _, e in ends) == len(data), "trailing bytes after the tensors"
    b, e = header["bf16"]["data_offsets"]
    bits = struct.unpack("<3H", data[b:e])
    assert list(bits) == [0x3F80, 0xC040, 0x4049], bits
    print(f"ok: safetensors {__import__('safetensors').__version__} reads the weft-written file")


def check_python_written(tool, tmp):
    path = os.path.join(tmp, "py.safetensors")
    tensors = {
        "model.layers.0.weight": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        "model.bias": np.array([1e-300, -2.0, math.pi], dtype=np.float64),
        "half": np.array([[0.5, -1.0], [65504.0, 0.0]], dtype=np.float16),
        "ids": np.array([2**62, -(2**62) - 1], dtype=np.int64),
        "i32": np.array([[-5, 6]], dtype=np.int32),
        "bytes": np.array([9, 200], dtype=np.uint8),
        "mask": np.array([False, True]),
        "i16": np.array([-30000, 30000], dtype=np.int16),
        "i8": np.array([-128, 127], dtype=np.int8),
        "zero_dim": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((2, 0), dtype=np.float64),
    }
    save_file(tensors, path, metadata={"format": "np", "k\u00e9y": "v\u00e4lue"})
    out = subprocess.run([tool, "dump", path], check=True, capture_output=True, text=True).stdout
    got = json.loads(out)
    assert got["metadata"] == {"format": "np", "k\u00e9y": "v\u00e4lue"}, got["metadata"]
    widened = {"int16": "int32", "int8": "int32"}
    names = {
        "float32": "float32", "float64": "float64", "float16": "float16", "int64": "int64",
        "int32": "int32", "uint8": "uint8", "bool": "bool",
    }
    assert set(got["tensors"]) == set(tensors), sorted(got["tensors"])
    for name, want in tensors.items():
        g = got["tensors"][name]
        want_dtype = widened.get(str(want.dtype), names.get(str(want.dtype)))
        assert g["dtype"] == want_dtype, (name, g["dtype"], want_dtype)
        assert g["shape"] == list(want.shape), (name, g["shape"], want.shape)
        vals = [float(v) if not isinstance(v, str) else float(v) for v in g["values"]]
        flat = want.reshape(-1)
        if want.dtype == np.int64:
            assert g["values"] == [int(x) for x in flat], (name, g["values"])
        else:
            assert vals == [float(x) for x in flat.astype(np.float64)], (name, vals, flat)
    print("ok: weft reads the safetensors-written file")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        check_weft_written(tool, tmp)
        check_python_written(tool, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
