"""Checks of command-line values that run before any work starts, so a mistake costs a second, not a drive
or a training run, and the spellings every command shares.

Pure stdlib: the CLI calls these before TensorFlow or donkeycar are imported.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pitlane.errors import UserError

# Old option spellings -> the one name each idea has now. They still work (with a warning on stderr) and
# no longer show in --help: an output folder is --out, a time limit --max-seconds.
DEPRECATED_OPTIONS: dict[str, str] = {
    "--report": "--out",
    "--duration": "--max-seconds",
    "--drive-seconds": "--max-seconds",
}


def modernize(argv: list[str]) -> tuple[list[str], list[str]]:
    """argv with deprecated option spellings replaced, and a warning for each one replaced (pure)."""
    out: list[str] = []
    warnings: list[str] = []
    for token in argv:
        if token == "--":
            out.extend(argv[len(out) :])
            break
        name, eq, value = token.partition("=")
        new = DEPRECATED_OPTIONS.get(name)
        if new is None:
            out.append(token)
            continue
        warnings.append(f"{name} is deprecated; use {new}")
        out.append(new + eq + value)
    return out, warnings


def _existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.absolute().anchor)


def _check_creatable(path: Path, flag: str, what: str) -> None:
    """path does not exist yet: its first existing ancestor must be a writable folder."""
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise UserError(f"{flag} {path}: {base} is a file, so the {what} cannot be created there")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {base} is not writable, so the {what} cannot be created there")


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """A folder the command will create or write into; UserError (one line) when it cannot be."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{flag} {path} is a file; give a folder (it is created if missing)")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UserError(f"{flag} {path} is not writable")
        return path
    _check_creatable(path, flag, "folder")
    return path


def check_output_file(path: str | Path, flag: str = "--out") -> Path:
    """A file the command will write (replacing it); UserError when it is a folder or cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise UserError(f"{flag} {path} is not writable")
        return path
    _check_creatable(path, flag, "file")
    return path


def check_port_free(port: int, what: str = "--port", host: str = "") -> None:
    """UserError when something already listens on the TCP port (what a server about to bind it would hit)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tornado and the twin bind
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"{what} {port}: the port is in use ({exc.strerror}); stop what listens there, "
                "or give another port (0 = any free one)"
            ) from None
