"""What "the same reports" means between two evaluations of the same runs: every file there in both, JSON
byte for byte but for the measured `wall_seconds`, plots the same image (PNG metadata chunks aside),
traces the same arrays."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

WALL = re.compile(rb'"wall_seconds": [0-9.eE+-]+')
PNG_METADATA = {b"tEXt", b"zTXt", b"iTXt", b"tIME"}


def masked(data: bytes) -> bytes:
    """JSON bytes with every measured wall time set to 0 (the only field a repeat may change)."""
    return WALL.sub(b'"wall_seconds": 0', data)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of each PNG chunk but the metadata ones (software, time, text)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, at = [], 8
    while at < len(data):
        (size,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        if kind not in PNG_METADATA:
            chunks.append((kind, data[at + 8 : at + 8 + size]))
        at += 12 + size
    return chunks


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def assert_same_tree(a: Path, b: Path) -> int:
    """Assert `a` and `b` hold the same reports; returns how many files were compared."""
    names = files(a)
    assert names == files(b)
    for name in names:
        x, y = (a / name).read_bytes(), (b / name).read_bytes()
        if name.endswith(".json"):
            assert masked(x) == masked(y), name
            if Path(name).name == "runs.json":  # no measured time in it: byte for byte
                assert x == y, name
        elif name.endswith(".png"):
            assert png_chunks(x) == png_chunks(y), name
        elif name.endswith(".npz"):
            with np.load(a / name) as za, np.load(b / name) as zb:
                assert sorted(za.files) == sorted(zb.files), name
                for key in za.files:
                    assert np.array_equal(za[key], zb[key]), f"{name}: {key}"
        else:
            assert x == y, name
    return len(names)
