"""Which Debian base tarball may be used: the one whose sha256 was recorded for exactly these inputs.

A base tarball is made by mmdebstrap from a suite on a mirror; the suite moves (security updates) and the
tarball is kept in a cache that outlives a build (the pipeline's build-cache volume). So a tarball is used
only when its sha256 is the one recorded for its inputs (suite, mirror, packages, excludes, timestamp):
- pinned in the repository (`debian-bases.json`, package data: read from the tools image, not the tag),
  for a mirror that never moves (snapshot.debian.org at one date): a fresh build that comes out
  different is refused, a cached one that differs is rebuilt;
- otherwise recorded beside the tarball when it was made (`<tarball>.sha256`): a cached tarball that no
  longer matches its record (changed, truncated, swapped by someone without the record) is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pitlane.errors import Refused
from pitlane.images.plan import BASE_EXCLUDES, BASE_PACKAGES, BuildConfig

PIN_FILE = Path(__file__).with_name("debian-bases.json")


def inputs_digest(arch: str, cfg: BuildConfig) -> str:
    """sha256 over everything mmdebstrap is given for `arch` (pure)."""
    doc = {
        "arch": arch,
        "suite": cfg.suite,
        "mirror": cfg.mirror,
        "packages": list(BASE_PACKAGES[arch]),
        "excludes": list(BASE_EXCLUDES),
        "timestamp": cfg.timestamp,
        "variant": "essential",
    }
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def pinned(arch: str, cfg: BuildConfig, pin_file: Path | None = None) -> str | None:
    """The tarball digest the repository pins for these inputs, or None (no pin for them)."""
    pin_file = pin_file or PIN_FILE
    doc = json.loads(pin_file.read_text()) if pin_file.is_file() else {}
    pin = (doc.get("tarballs") or {}).get(f"{cfg.suite}-{arch}") or {}
    return pin.get("sha256") if pin.get("inputs") == inputs_digest(arch, cfg) else None


def record_path(tar: Path) -> Path:
    return tar.with_name(tar.name + ".sha256")


def recorded(tar: Path, inputs: str) -> str | None:
    """The digest recorded beside `tar` when it was made from `inputs`, or None."""
    try:
        doc = json.loads(record_path(tar).read_text())
    except (OSError, ValueError):
        return None
    return doc.get("sha256") if isinstance(doc, dict) and doc.get("inputs") == inputs else None


def record(tar: Path, inputs: str, digest: str) -> None:
    record_path(tar).write_text(json.dumps({"inputs": inputs, "sha256": digest}) + "\n")


def usable(tar: Path, arch: str, cfg: BuildConfig, pin_file: Path | None = None) -> tuple[bool, str]:
    """(may the cached `tar` be reused, why not): its sha256 must be the pinned or recorded one."""
    want = pinned(arch, cfg, pin_file) or recorded(tar, inputs_digest(arch, cfg))
    if want is None:
        return False, "no digest was recorded for it"
    have = file_digest(tar)
    return (True, "") if have == want else (False, f"it is {have}, not {want} as recorded")


def check_fresh(tar: Path, arch: str, cfg: BuildConfig, pin_file: Path | None = None) -> str:
    """The digest of a tarball just made, recorded beside it; Refused when the repository pins another."""
    have, want = file_digest(tar), pinned(arch, cfg, pin_file)
    if want is not None and have != want:
        raise Refused(
            f"the Debian base {cfg.suite}-{arch} built now is {have}, but {(pin_file or PIN_FILE).name} pins {want} for these "
            "inputs: the mirror served other packages; nothing was built on it (check the mirror, then pin "
            "the new digest in a reviewed commit)"
        )
    record(tar, inputs_digest(arch, cfg), have)
    return have
