"""`pitlane release prepare`: pin a candidate model in release.yaml, show what ships and what changed
since the last release, then commit and tag, in the release manager's own git checkout (real git).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from pitlane.errors import UserError
from pitlane.release import config as rconfig
from pitlane.release.changes import Changes, git, since_last_release
from pitlane.release.policy import effective_policy, floor

AUTHOR = ("-c", "user.name=pitlane-release", "-c", "user.email=release@pitlane.invalid")


@dataclass(frozen=True)
class Prepared:
    config: rconfig.ReleaseConfig
    changes: Changes
    commit: str
    created: bool  # False when the tag already pinned exactly this (prepare run twice)


def repo_root(path: Path) -> Path:
    return Path(git(path, "rev-parse", "--show-toplevel").strip())


def _identity(root: Path) -> tuple[str, ...]:
    """Commit as the user if git knows them, else as pitlane-release (a fresh CI box)."""
    probe = [git_ok(root, "config", "user.name"), git_ok(root, "config", "user.email")]
    return () if all(probe) else AUTHOR


def git_ok(root: Path, *args: str) -> bool:
    """True when git succeeds (and, for a query, answers something)."""
    try:
        return bool(git(root, *args).strip()) or args[0] == "cat-file"
    except UserError:
        return False


def summary(cfg: rconfig.ReleaseConfig, changes: Changes) -> str:
    """What will ship and what changed, for a person to read before pushing the tag."""
    lines = [
        f"release {cfg.version}",
        f"  model:   {cfg.model}",
        f"  gate:    {cfg.gate_source if isinstance(cfg.gate_source, str) else 'inline policy'} "
        f"(scenes {', '.join(cfg.gate.scenes)}, {cfg.gate.laps} laps)",
        f"  targets: {', '.join(cfg.targets)}",
        f"  images:  {'rebuilt: sim ' + cfg.images['sim'] + ', car ' + cfg.images['car'] if changes.code_changed else 'unchanged (model-only release)'}",
        f"changes since {changes.previous or 'the beginning (first release)'}: {len(changes.commits)} commit(s), {len(changes.paths)} file(s)",
    ]
    lines += [f"  {c}" for c in changes.commits[:20]]
    if len(changes.commits) > 20:
        lines.append(f"  ... and {len(changes.commits) - 20} more")
    return "\n".join(lines)


def prepare(root: Path, version: str, model: str, policy: str | None = None, tag: bool = True) -> Prepared:
    """Write release.yaml, commit it and tag `version`; idempotent when the tag already pins this model."""
    rconfig.check_tag(version)
    rconfig.check_digest_ref(model)
    root = repo_root(root)
    path = root / rconfig.RELEASE_FILE
    if git_ok(root, "rev-parse", "-q", "--verify", f"refs/tags/{version}"):
        at_tag = (
            rconfig.parse(yaml.safe_load(git(root, "show", f"{version}:{rconfig.RELEASE_FILE}")), root=root)
            if git_ok(root, "cat-file", "-e", f"{version}:{rconfig.RELEASE_FILE}")
            else None
        )
        if at_tag is not None and at_tag.model == model:
            return Prepared(
                at_tag,
                since_last_release(root, version),
                git(root, "rev-list", "-n1", version).strip(),
                False,
            )
        raise UserError(
            f"tag {version} already exists and pins another model; a release tag is never moved: use a new version"
        )
    dirty = [
        line[3:]
        for line in git(root, "status", "--porcelain").splitlines()
        if line[3:] != rconfig.RELEASE_FILE
    ]
    if dirty:
        raise UserError(
            f"uncommitted changes ({', '.join(dirty[:3])}{' ...' if len(dirty) > 3 else ''}): commit or stash them first"
        )
    doc = yaml.safe_load(path.read_text()) if path.is_file() else {}
    doc = doc if isinstance(doc, dict) else {}
    doc.update(version=version, model=model)
    if policy is not None:
        doc["gate"] = {"policy": policy}
    doc.setdefault("images", rconfig.default_images(model))
    cfg = rconfig.parse(doc, rconfig.RELEASE_FILE, root)
    effective_policy(floor(), cfg.gate)  # the pipeline would refuse a looser gate: say so before tagging
    path.write_text(cfg.to_yaml())
    git(root, "add", rconfig.RELEASE_FILE)
    if git(root, "diff", "--cached", "--name-only").strip():
        git(root, *_identity(root), "commit", "-q", "-m", f"release {version}: model {model}")
    if tag:
        git(root, *_identity(root), "tag", "-a", version, "-m", f"pitlane {version}\n\nmodel {model}")
    rev = version if tag else "HEAD"
    return Prepared(replace(cfg), since_last_release(root, rev), git(root, "rev-parse", "HEAD").strip(), True)
