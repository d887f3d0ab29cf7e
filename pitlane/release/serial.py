"""The release serial: assigned by the pipeline, one more than the highest released, claimed atomically.

A car refuses any release whose serial is below the highest it accepted, so whoever picks the serial can
lock the fleet out (a huge one) or replay an old release (a low one): the pusher must not pick it. The
signing step assigns it here and signs it into the signature (`pitlane.dev/serial`).

Where the highest is kept: in the repository's origin, as one ref per serial, `refs/pitlane/serials/<N>`,
pointing at a small commit that names the release (tag, candidate digest, tag commit). A claim is a plain
`git push` of a NEW ref, which git refuses when the ref already exists pointing elsewhere: two releases
racing for N, one gets it and the other fails (run it again: it takes N+1). The claim commit is
deterministic (empty tree, fixed dates), so running the same release again pushes the same commit and
keeps its serial. The registry's signatures are a second record: the highest serial signed by the release
key counts too, so a deleted claim ref can never hand out a serial twice.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pitlane.errors import Refused, Unavailable, UserError

PREFIX = "refs/pitlane/serials/"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
IDENTITY = {
    "GIT_AUTHOR_NAME": "pitlane-release",
    "GIT_AUTHOR_EMAIL": "release@pitlane.invalid",
    "GIT_AUTHOR_DATE": "@0 +0000",
    "GIT_COMMITTER_NAME": "pitlane-release",
    "GIT_COMMITTER_EMAIL": "release@pitlane.invalid",
    "GIT_COMMITTER_DATE": "@0 +0000",
}


@dataclass(frozen=True)
class Release:
    """What a serial is claimed for: the tag, the candidate it releases, the commit the tag names."""

    version: str
    model: str  # the candidate, REGISTRY/REPO@sha256:...
    commit: str

    def text(self, serial: int) -> str:
        return f"pitlane release serial {serial}\n\nversion {self.version}\nmodel {self.model}\ncommit {self.commit}\n"


def _git(work: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "-C", str(work), "-c", "core.hooksPath=/dev/null", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
    )


def _last(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def claims(remote: str, work: Path) -> dict[int, str]:
    """Serial -> the claim commit's message, for every serial claimed on `remote` (fetched into `work`)."""
    proc = _git(work, "fetch", "-q", "--no-tags", remote, f"+{PREFIX}*:{PREFIX}*")
    if proc.returncode != 0:
        raise Unavailable(f"cannot read the release serials from {remote}: {_last(proc)}")
    refs = _git(work, "for-each-ref", "--format=%(refname) %(objectname)", PREFIX).stdout.split("\n")
    out = {}
    for line in filter(None, refs):
        name, sha = line.split()
        number = name[len(PREFIX) :]
        if number.isascii() and number.isdigit():
            out[int(number)] = _git(work, "log", "-1", "--format=%B", sha).stdout.strip() + "\n"
    return out


def claim(remote: str, work: Path, serial: int, release: Release) -> None:
    """Push `refs/pitlane/serials/<serial>` naming `release`; Refused when another release holds it."""
    sha = _git(work, "commit-tree", EMPTY_TREE, "-m", release.text(serial), env=IDENTITY).stdout.strip()
    proc = _git(work, "push", "-q", remote, f"{sha}:{PREFIX}{serial}")
    if proc.returncode != 0:
        raise Refused(
            f"release serial {serial} was claimed by another release meanwhile ({_last(proc)}): "
            f"run {release.version} again to take the next one"
        )


def assign(remote: str, release: Release, signed_floor: int = 0) -> int:
    """This release's serial: the one it already claimed, else one more than the highest claimed or signed."""
    with tempfile.TemporaryDirectory(prefix="pitlane-serials-") as tmp:
        work = Path(tmp)
        if _git(work, "init", "-q", "--bare").returncode != 0:
            raise UserError("git init failed: is git installed?")
        held = claims(remote, work)
        for serial, text in held.items():
            if text == release.text(serial):
                return serial
        serial = max([signed_floor, *held]) + 1
        claim(remote, work, serial, release)
        return serial
