"""What changed since the last release tag, and whether it needs new images.

Images are built from code; a release that changes only release.yaml (a new model), documentation,
manifests, pipelines or tests reuses the images the GitOps manifests already pin.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from pitlane.errors import Refused, UserError
from pitlane.release.config import SEMVER

# Paths that never end up in an image: a release touching only these is model-only.
NOT_IN_IMAGES = (
    "release.yaml",
    "README.md",
    "docs/",
    "argocd/",
    "pipelines/",
    "tests/",
    "bench/",
    "notebooks/",
    ".ci/",
)


def needs_images(paths: list[str] | tuple[str, ...]) -> bool:
    """True when any changed path may end up in an image (so both must be rebuilt)."""
    return any(not _outside_images(p) for p in paths)


def _outside_images(path: str) -> bool:
    if "/" not in path and path.endswith(".md"):
        return True
    return any(path == n or (n.endswith("/") and path.startswith(n)) for n in NOT_IN_IMAGES)


def git(repo: Path, *args: str) -> str:
    """Run git in `repo`; a failure is the user's problem to see in one line."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(
            f"git {' '.join(args)}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'failed'}"
        )
    return proc.stdout


@dataclass(frozen=True)
class Changes:
    """The difference between a release and the one before it."""

    previous: str | None  # the last release tag before this one, None for the first release
    paths: tuple[str, ...]  # files changed since `previous` (every tracked file for a first release)
    commits: tuple[str, ...]  # one line per commit since `previous`

    @property
    def code_changed(self) -> bool:
        return self.previous is None or needs_images(self.paths)


def previous_tag(repo: Path, rev: str) -> str | None:
    """The highest release tag (semver order) reachable from `rev`, other than `rev`'s own tags."""
    own = set(git(repo, "tag", "--points-at", rev).split())
    tags = [
        t
        for t in git(repo, "tag", "--merged", rev, "--list", "v*").split()
        if SEMVER.fullmatch(t) and t not in own
    ]
    return max(tags, key=_version_key) if tags else None


def _version_key(tag: str) -> tuple[int, int, int, int, str]:
    m = SEMVER.fullmatch(tag)
    assert m is not None
    return int(m["major"]), int(m["minor"]), int(m["patch"]), 0 if m["pre"] else 1, m["pre"] or ""


def check_on_branch(repo: Path, rev: str, branch: str) -> str:
    """The commit `rev` names, if it is on `branch` (e.g. origin/main); Refused otherwise: a release is cut
    only from reviewed code, and a tag can be pushed on any commit."""
    commit = git(repo, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}").strip()
    git(repo, "rev-parse", "--verify", "-q", f"{branch}^{{commit}}")  # UserError when the branch is unknown
    proc = subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", commit, branch])
    if proc.returncode == 1:
        raise Refused(
            f"tag {rev} points at {commit[:12]}, which is not on {branch}: a release is cut from {branch} only; "
            f"merge it there first, then tag the merged commit"
        )
    if proc.returncode != 0:
        raise UserError(
            f"git merge-base --is-ancestor {commit[:12]} {branch} failed (exit {proc.returncode})"
        )
    return commit


def since_last_release(repo: Path, rev: str = "HEAD") -> Changes:
    prev = previous_tag(repo, rev)
    if prev is None:
        paths = git(repo, "ls-tree", "-r", "--name-only", rev).split("\n")
        commits = git(repo, "log", "--format=%h %s", rev).split("\n")
    else:
        paths = git(repo, "diff", "--name-only", prev, rev).split("\n")
        commits = git(repo, "log", "--format=%h %s", f"{prev}..{rev}").split("\n")
    return Changes(prev, tuple(p for p in paths if p), tuple(c for c in commits if c))
