"""The fleet list: one small YAML file per target under argocd/fleet/ (the NUC twin, each Pi car).

Argo CD's ApplicationSet turns each file into an Application; these checks run before it does, so a
wrong file is reported by name and field instead of as a failed sync.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from pitlane.errors import UserError
from pitlane.images.plan import IMAGES

FLEET_DIR = Path("fleet")
# kind (the image a target runs) -> its overlay under argocd/overlays/: the release targets, named here once
OVERLAYS: dict[str, str] = {"sim": "nuc-sim", "car": "pi-car"}
# kind -> (overlay, the node architecture that overlay selects: the image's own)
KINDS: dict[str, tuple[str, str]] = {name: (overlay, IMAGES[name].arch) for name, overlay in OVERLAYS.items()}
ARCHES: tuple[str, ...] = tuple(dict.fromkeys(arch for _, arch in KINDS.values()))
FIELDS: tuple[str, ...] = ("name", "kind", "cluster", "arch")
# Application names are "pitlane-<name>": a DNS label of at most 63 characters
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,53}[a-z0-9])?$")
_CLUSTER = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9._]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Target:
    """One fleet member: where Argo CD syncs which overlay."""

    name: str  # fleet name; the Application is pitlane-<name>, the car reports under it
    kind: str  # "sim" (NUC: twin + simulated car) or "car" (a Raspberry Pi)
    cluster: str  # the cluster's name in Argo CD ("in-cluster" for Argo CD's own)
    arch: str  # node architecture: amd64 or arm64
    file: Path

    @property
    def overlay(self) -> str:
        return KINDS[self.kind][0]


def parse_target(path: Path, text: str) -> Target:
    """One fleet file's target; a UserError names the file and the field that is wrong."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with {', '.join(FIELDS)}")
    unknown = sorted(str(k) for k in data if k not in FIELDS)
    if unknown:
        raise UserError(f"{path}: unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    for field in FIELDS:
        if not isinstance(data.get(field), str) or not data[field]:
            raise UserError(f"{path}: field {field!r} must be a non-empty string, got {data.get(field)!r}")
    name, kind, cluster, arch = (data[f] for f in FIELDS)
    if not _NAME.match(name):
        raise UserError(
            f"{path}: field 'name': {name!r} must be lower-case letters, digits and '-' (at most 55)"
        )
    if kind not in KINDS:
        raise UserError(f"{path}: field 'kind': unknown kind {kind!r} (one of {', '.join(KINDS)})")
    if arch not in ARCHES:
        raise UserError(f"{path}: field 'arch': unknown arch {arch!r} (one of {', '.join(ARCHES)})")
    overlay, overlay_arch = KINDS[kind]
    if arch != overlay_arch:
        raise UserError(
            f"{path}: field 'arch': {arch} does not match kind {kind} (overlay {overlay} runs on {overlay_arch})"
        )
    if not _CLUSTER.match(cluster):
        raise UserError(f"{path}: field 'cluster': {cluster!r} is not an Argo CD cluster name")
    return Target(name=name, kind=kind, cluster=cluster, arch=arch, file=path)


def load_fleet(argocd: Path) -> list[Target]:
    """Every target in argocd/fleet/*.yaml, sorted by name; duplicate names are an error naming both files."""
    folder = argocd / FLEET_DIR
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise UserError(f"{folder}: no fleet files (*.yaml), so Argo CD would deploy nothing")
    targets: dict[str, Target] = {}
    clusters: dict[str, Target] = {}
    for path in files:
        target = parse_target(path, path.read_text())
        if target.name in targets:
            raise UserError(
                f"{path}: field 'name': duplicate name {target.name!r} (also in {targets[target.name].file})"
            )
        if target.cluster in clusters:
            # two Applications would fight over the same namespace, pruning each other's objects
            raise UserError(
                f"{path}: field 'cluster': {target.cluster!r} already runs {clusters[target.cluster].name!r} "
                f"({clusters[target.cluster].file})"
            )
        targets[target.name] = clusters[target.cluster] = target
    return sorted(targets.values(), key=lambda t: t.name)
