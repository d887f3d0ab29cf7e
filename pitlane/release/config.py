"""release.yaml: what a tag ships. The candidate model (pinned by digest), the gate policy, the image
repositories and the GitOps targets, checked with one clear error per mistake.

The file sits at the repository root and is changed only through a reviewed commit (`pitlane release
prepare` writes it); the release pipeline reads it at the tag, so a tag always means one model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pitlane.artifacts.oci import Reference
from pitlane.deploy.fleet import OVERLAYS
from pitlane.errors import BadInput, UserError
from pitlane.evaluate.gate import GatePolicy, load_policy
from pitlane.images.plan import repository

RELEASE_FILE = "release.yaml"
# the images a release builds: the one each fleet target runs (the hub's notebook image is built and pinned
# on its own: README, "Container images")
RELEASED_IMAGES: tuple[str, ...] = tuple(OVERLAYS)
TARGETS = tuple(OVERLAYS.values())  # the argocd/ overlays a release pins (nuc-sim, pi-car)
SEMVER = re.compile(
    r"^v(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)  # use with fullmatch, never match + `$`: `$` also matches before a trailing newline (v1.0.0\n)
KEYS = ("version", "model", "gate", "images", "targets")


def check_tag(tag: str) -> tuple[int, int, int, str]:
    """(major, minor, patch, prerelease) of a release tag `vX.Y.Z[-pre]`; anything else is refused."""
    m = SEMVER.fullmatch(tag or "")
    if not m:
        raise UserError(
            f"release tag {tag!r} is not semantic versioning: expected vMAJOR.MINOR.PATCH, e.g. v1.2.0"
        )
    return int(m["major"]), int(m["minor"]), int(m["patch"]), m["pre"] or ""


def check_digest_ref(ref: str, what: str = "model") -> str:
    """A registry reference pinned by digest (`host/repo@sha256:<64 hex>`); a tag is not enough."""
    why = "a tag can move"
    try:
        if isinstance(ref, str) and Reference.parse(ref).pinned:
            return ref
    except BadInput as exc:
        why = str(exc)
    raise BadInput(
        f"{what} reference {ref!r} must be pinned by digest: REGISTRY/REPO@sha256:<64 hex digits> ({why})"
    )


def check_repository(text: str, what: str) -> str:
    """An image repository `REGISTRY/REPO`, with no tag and no digest (a release pins the digest)."""
    try:
        ref = Reference.parse(text) if isinstance(text, str) else None
    except BadInput as exc:
        raise BadInput(f"{what} {text!r} must be REGISTRY/REPO (no tag, no digest): {exc}") from None
    if ref is None or ref.tag or ref.digest:
        raise BadInput(f"{what} {text!r} must be REGISTRY/REPO (no tag, no digest)")
    return text


@dataclass(frozen=True)
class ReleaseConfig:
    """One release: the tag's version, the candidate model and what it must pass, where images go."""

    version: str
    model: str  # REGISTRY/REPO@sha256:... (the candidate, pushed by a data scientist)
    gate: GatePolicy = field(default_factory=GatePolicy)
    gate_source: str | dict[str, Any] = "default"  # as written: 'default', a path, or an inline mapping
    images: dict[str, str] = field(default_factory=dict)  # sim/car -> REGISTRY/REPO (no tag, no digest)
    targets: tuple[str, ...] = TARGETS

    @property
    def registry(self) -> str:
        return Reference.parse(self.model).registry

    def to_yaml(self) -> str:
        doc = {
            "version": self.version,
            "model": self.model,
            "gate": {"policy": self.gate_source},
            "images": dict(self.images),
            "targets": list(self.targets),
        }
        head = (
            "# What the tag ships (see README, 'Releasing'). Written by `pitlane release prepare`;\n"
            "# change it only through a reviewed commit. The pipeline gates, signs and pins exactly this.\n"
        )
        return head + yaml.safe_dump(doc, sort_keys=False)


def default_images(model: str) -> dict[str, str]:
    """Image repositories beside the model's: REGISTRY/pitlane/sim and REGISTRY/pitlane/car."""
    registry = Reference.parse(model).registry
    return {name: repository(registry, name) for name in RELEASED_IMAGES}


def parse(doc: Any, source: str = RELEASE_FILE, root: Path | None = None) -> ReleaseConfig:
    """Check a loaded release.yaml; `root` resolves a gate policy given as a path in the repository."""
    if not isinstance(doc, dict):
        raise UserError(f"{source}: expected a mapping with keys {', '.join(KEYS)}")
    unknown = sorted(str(k) for k in doc if k not in KEYS)
    if unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(KEYS)}")
    for key in ("version", "model"):
        if key not in doc:
            raise UserError(f"{source}: missing '{key}'")
    version = str(doc["version"])
    try:
        check_tag(version)
        model = check_digest_ref(doc["model"])
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    gate_doc = doc.get("gate") or {"policy": "default"}
    if not isinstance(gate_doc, dict) or set(gate_doc) - {"policy"}:
        raise UserError(
            f"{source}: gate must be a mapping with one key, policy ('default', a file or a mapping)"
        )
    gate_source = gate_doc.get("policy", "default")
    if isinstance(gate_source, dict):
        gate = GatePolicy.from_dict(gate_source, f"{source}: gate.policy")
    elif isinstance(gate_source, str):
        if gate_source == "default":
            gate = load_policy(None)
        else:
            path = (root or Path.cwd()) / gate_source
            if not path.is_file():
                raise UserError(f"{source}: gate.policy file {gate_source} does not exist in the repository")
            gate = load_policy(path)
    else:
        raise UserError(f"{source}: gate.policy must be 'default', a file path or a mapping of thresholds")
    images = doc.get("images") or default_images(model)
    if not isinstance(images, dict) or set(images) != set(RELEASED_IMAGES):
        raise UserError(
            f"{source}: images must map exactly {' and '.join(RELEASED_IMAGES)} to repositories, got {images!r}"
        )
    for name, repo in images.items():
        try:
            check_repository(repo, f"images.{name}")
        except UserError as exc:
            raise BadInput(f"{source}: {exc}") from None
    targets = doc.get("targets", list(TARGETS))
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not targets or any(t not in TARGETS for t in targets):
        raise UserError(
            f"{source}: targets must be a non-empty list of {', '.join(TARGETS)}, got {targets!r}"
        )
    return ReleaseConfig(version, model, gate, gate_source, dict(images), tuple(targets))


def load(root: Path, tag: str | None = None) -> ReleaseConfig:
    """release.yaml of a checkout; with `tag`, also require that the file names that version."""
    if tag is not None:
        check_tag(tag)
    path = Path(root) / RELEASE_FILE
    if not path.is_file():
        where = f" at {tag}" if tag else ""
        raise UserError(
            f"no {RELEASE_FILE}{where} in {root}: run `pitlane release prepare vX.Y.Z --model REF` first"
        )
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    config = parse(doc, str(path.name), root)
    if tag is not None and config.version != tag:
        raise UserError(
            f"{RELEASE_FILE} is for {config.version}, but the tag is {tag}: retag or fix the file"
        )
    return config
