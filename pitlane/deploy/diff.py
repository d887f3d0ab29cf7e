"""`pitlane deploy diff A B`: what a release changes on the clusters, object by object and line by line.

A and B are git refs (tags, commits, branches) of the repository or folders holding an argocd/ tree.
Both sides are rendered for every fleet target (and the bootstrap objects), so the answer is what Argo CD
would change, not what the commit touched: a model-only release shows one line of one ConfigMap per target.
"""

from __future__ import annotations

import difflib
import io
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pitlane.deploy.check import BOOTSTRAP_DIR
from pitlane.deploy.fleet import load_fleet
from pitlane.deploy.render import REPO_DIR, docs, find_argocd, kustomize, render_target
from pitlane.deploy.validate import object_name
from pitlane.errors import UserError


@dataclass(frozen=True)
class ObjectChange:
    """One object that differs: where (a target or 'bootstrap'), which object, the lines out and in."""

    render: str
    obj: str
    removed: tuple[str, ...]
    added: tuple[str, ...]


@contextmanager
def release_tree(spec: str, repo: Path) -> Iterator[Path]:
    """The argocd/ folder of a release: SPEC as a folder, else as a git ref of REPO (extracted to a temp dir)."""
    if Path(spec).is_dir():
        yield find_argocd(Path(spec))
        return
    proc = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", spec, str(REPO_DIR)],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(
            f"{spec}: neither a folder nor a git ref with argocd/ in {repo} ({reason[-1] if reason else ''})"
        )
    with tempfile.TemporaryDirectory(prefix="pitlane-release-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp) / REPO_DIR


def renders(argocd: Path, progress: Callable[[str], None]) -> dict[str, dict[str, dict[str, Any]]]:
    """{render: {object: object}} for the bootstrap objects and every fleet target of one release."""
    out = {"bootstrap": {object_name(o): o for o in docs(kustomize(argocd / BOOTSTRAP_DIR))}}
    for target in load_fleet(argocd):
        progress(f"{argocd}: target {target.name}")
        out[f"target {target.name}"] = {object_name(o): o for o in render_target(argocd, target).objects}
    return out


def diff_renders(
    old: dict[str, dict[str, dict[str, Any]]], new: dict[str, dict[str, dict[str, Any]]]
) -> list[ObjectChange]:
    """Changed, added and removed objects, with the YAML lines that differ (added objects: all lines in)."""
    changes = []
    for render in sorted(set(old) | set(new)):
        a, b = old.get(render, {}), new.get(render, {})
        for name in sorted(set(a) | set(b)):
            before = _lines(a[name]) if name in a else []
            after = _lines(b[name]) if name in b else []
            if before == after:
                continue
            removed: list[str] = []
            added: list[str] = []
            for line in difflib.unified_diff(before, after, n=0, lineterm=""):
                if line.startswith(("---", "+++", "@@")):
                    continue
                (removed if line.startswith("-") else added).append(line[1:])
            changes.append(ObjectChange(render, name, tuple(removed), tuple(added)))
    return changes


def diff_releases(
    a: str, b: str, repo: Path, progress: Callable[[str], None] | None = None
) -> list[ObjectChange]:
    say = progress or (lambda _: None)
    with release_tree(a, repo) as tree_a:
        old = renders(tree_a, say)
    with release_tree(b, repo) as tree_b:
        new = renders(tree_b, say)
    return diff_renders(old, new)


def format_changes(changes: list[ObjectChange]) -> str:
    """The human report: per render and object, '-'/'+' lines; a summary line last."""
    out = []
    for c in changes:
        out.append(f"{c.render}: {c.obj}")
        out += [f"  - {line}" for line in c.removed] + [f"  + {line}" for line in c.added]
    renders_touched = len({c.render for c in changes})
    lines = sum(len(c.removed) + len(c.added) for c in changes)
    out.append(f"{len(changes)} object(s) changed in {renders_touched} render(s), {lines} line(s)")
    return "\n".join(out)


def _lines(obj: dict[str, Any]) -> list[str]:
    return yaml.safe_dump(obj, sort_keys=True, width=1000).splitlines()
