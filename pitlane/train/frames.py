"""A tub's camera frames decoded once, kept as one uint8 array, instead of a JPEG decode per record.

donkeycar's input pipeline opens and decodes each record's JPEG in Python on its first epoch (its
`CACHE_POLICY` then keeps the array on the record object), one record at a time under the GIL. Here every
frame a training uses is decoded up front by donkeycar's own `load_image_sized` (the very same pixels),
in threads (Pillow releases the GIL while it decodes), into one array a `tf.data` pipeline gathers batches
from. The arrays are kept in this process keyed by the tub's content digest and the frames asked for, so
a notebook that trains again on the same tubs decodes nothing; a tub that changed has another digest and is
decoded afresh. Memory only: decoding costs about 0.5 ms a frame, a few seconds a training, less than
writing and invalidating copies on disk would be worth.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pitlane.data.tub import IMAGES
from pitlane.errors import UserError

log = logging.getLogger(__name__)

KEEP_BYTES = 2 << 30  # [B] decoded frames kept between trainings in one process (least recently used go)


@dataclass(frozen=True)
class Frames:
    """The decoded frames of some of a tub's images."""

    key: tuple[str, str]  # (tub content digest, digest of the image names asked for and the frame shape)
    rows: dict[str, int]  # image file name (as the catalog names it) -> row of `pixels`
    pixels: np.ndarray  # (rows, height, width, depth) uint8, as donkeycar's load_image returns them

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)


_kept: OrderedDict[tuple[str, str], Frames] = OrderedDict()
_lock = threading.Lock()


def decode_frames(
    images_dir: str | Path, names: Sequence[str], shape: tuple[int, int, int], threads: int | None = None
) -> np.ndarray:
    """(len(names), h, w, d) uint8: each image decoded (and resized, like donkeycar) by donkeycar's loader."""
    from donkeycar.utils import load_image_sized

    height, width, depth = shape
    out = np.empty((len(names), height, width, depth), np.uint8)

    def load(i: int) -> None:
        path = os.path.join(images_dir, names[i])
        try:
            img = load_image_sized(path, width, height, depth)
        except Exception as exc:  # donkeycar's loader raises whatever Pillow raised
            raise UserError(f"cannot decode camera frame {path}: {exc}; see `pitlane data check`") from exc
        out[i] = img.reshape(height, width, depth)

    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        list(pool.map(load, range(len(names))))
    return out


def tub_frames(
    tub_path: str | Path,
    digest: str,
    names: Sequence[str],
    shape: tuple[int, int, int],
    threads: int | None = None,
) -> Frames:
    """The frames `names` of the tub at `tub_path` whose content digest is `digest`, decoded at most once
    per process while they stay among the KEEP_BYTES most recently used."""
    unique = list(dict.fromkeys(names))
    key = (digest, hashlib.sha256(repr((unique, shape)).encode()).hexdigest())
    with _lock:
        kept = _kept.get(key)
        if kept is not None:
            _kept.move_to_end(key)
            return kept
    pixels = decode_frames(Path(tub_path) / IMAGES, unique, shape, threads)
    frames = Frames(key, {name: i for i, name in enumerate(unique)}, pixels)
    with _lock:
        _kept[key] = frames
        while sum(f.nbytes for f in _kept.values()) > KEEP_BYTES and len(_kept) > 1:
            _kept.popitem(last=False)
    log.info("decoded %d frames of %s (%.0f MB)", len(unique), tub_path, pixels.nbytes / 1e6)
    return frames


def forget_frames() -> None:
    """Drop every kept frame (tests; a process that needs the memory back)."""
    with _lock:
        _kept.clear()
