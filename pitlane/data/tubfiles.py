"""Confined file access inside one tub: no symlink is followed and no path leaves the tub's folder.

A tub is often someone else's data (downloaded, copied from a car), so every name in it is untrusted: a
manifest may list ``../../x.catalog``, and any of its files may be a symlink to a file of the user's. Every
read and write of the checker and its repair goes through here: a name must be one plain file name (or
``images/<name>``), no component of the path may be a symlink, the resolved path must stay inside the tub,
and files are opened with ``O_NOFOLLOW`` (so a symlink planted between the check and the open fails too).
Writes are atomic (a temporary file in the same folder, then ``os.replace``, which replaces a name, never
the file a symlink points to) and backups are created with ``O_EXCL``, never over an existing name.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UnsafePath(ValueError):
    """A name in a tub that would leave the tub or go through a symlink."""


def _parts(name: str) -> list[str]:
    if not isinstance(name, str) or not name or "\x00" in name or "\\" in name or name.startswith("/"):
        raise UnsafePath(f"{name!r} is not a file name inside the tub")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts) or len(parts) > 2:
        raise UnsafePath(f"{name!r} is not a file name inside the tub")
    return parts


def confined(tub: Path, name: str) -> Path:
    """``tub/name`` after checking it names a file inside the tub, through no symlink (UnsafePath if not)."""
    root = Path(os.path.realpath(tub))
    path = root
    for part in _parts(name):
        path = path / part
        if path.is_symlink():
            raise UnsafePath(f"{name} is a symlink (to {os.readlink(path)}); pitlane does not follow it")
    if not Path(os.path.realpath(path)).is_relative_to(root):
        raise UnsafePath(f"{name} resolves outside the tub")
    return path


def is_symlink(tub: Path, name: str) -> bool:
    return (Path(tub) / name).is_symlink()


def read_bytes(tub: Path, name: str, limit: int | None = None) -> bytes:
    """The bytes of a regular file inside the tub (OSError/UnsafePath otherwise)."""
    path = confined(tub, name)
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{name} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read() if limit is None else f.read(limit)
    finally:
        os.close(fd)


def is_file(tub: Path, name: str) -> bool:
    """A regular file inside the tub, reached through no symlink."""
    try:
        path = confined(tub, name)
    except UnsafePath:
        return False
    return stat.S_ISREG(path.lstat().st_mode) if os.path.lexists(path) else False


def write_bytes(tub: Path, name: str, data: bytes) -> None:
    """Replace ``tub/name`` atomically with ``data`` (the name itself is replaced, never a link's target)."""
    path = confined(tub, name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_new(tub: Path, name: str, data: bytes) -> None:
    """Create ``tub/name``; fails (FileExistsError) if anything, a dangling symlink included, has that name."""
    path = confined(tub, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def backup(tub: Path, name: str) -> str:
    """Copy ``name`` to a free ``<name>.orig[.N]`` (created exclusively); returns the backup's name."""
    data = read_bytes(tub, name)
    for n in range(10_000):
        target = f"{name}.orig" if n == 0 else f"{name}.orig.{n}"
        if os.path.lexists(Path(tub) / target):
            continue
        try:
            create_new(tub, target, data)
        except FileExistsError:
            continue
        return target
    raise UnsafePath(f"no free backup name for {name}")


def hard_links(tub: Path, name: str) -> int:
    """How many names the file has (a file shared with another folder would change there too when written
    in place, as donkeycar's Tub writes its manifest and catalogs); 0 if it does not exist."""
    try:
        return confined(tub, name).lstat().st_nlink
    except FileNotFoundError:
        return 0


def remove(tub: Path, name: str) -> None:
    os.unlink(confined(tub, name))
