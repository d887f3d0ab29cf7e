"""Render argocd/ targets as Argo CD would: `kubectl kustomize` of an overlay, or of a fleet target's
Application (the ApplicationSet's template filled with the target's fields, its kustomize options applied).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pitlane.deploy.fleet import FIELDS, Target, load_fleet
from pitlane.errors import UserError

APPLICATIONSET_FILE = Path("bootstrap/applicationset.yaml")
OVERLAYS_DIR = Path("overlays")
REPO_DIR = Path("argocd")  # where argocd/ sits in the repository
ARGOCD_NAMESPACE = "argocd"
# The Go-template forms the ApplicationSet uses; anything else must be taught here first.
_IF_EQ = re.compile(
    r'\{\{-?\s*if eq \.(\w+) "([^"]*)"\s*-?\}\}(.*?)\{\{-?\s*else\s*-?\}\}(.*?)\{\{-?\s*end\s*-?\}\}'
)
_ERR_BLOCK = re.compile(r"err=<\n(.*?)\n >", re.DOTALL)
_ERR_QUOTED = re.compile(r'err="((?:[^"\\]|\\.)*)"')
_FIELD = re.compile(r"\{\{-?\s*\.(\w+)\s*-?\}\}")


@dataclass(frozen=True)
class Rendered:
    """One render: what it is (an overlay or a fleet target), its objects and its YAML text."""

    label: str
    objects: list[dict[str, Any]]
    text: str
    application: dict[str, Any] | None = None  # the generated Application, for fleet targets


def kustomize(folder: Path) -> str:
    """`kubectl kustomize FOLDER` (kustomize v5): the rendered YAML, or a UserError with kustomize's reason."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise UserError("kubectl not found: pitlane deploy renders with `kubectl kustomize` (kustomize v5)")
    proc = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UserError(
            f"{folder}: kustomize failed: {kubectl_reason(proc.stderr) or f'exit {proc.returncode}'}"
        )
    return proc.stdout


def kubectl_reason(stderr: str) -> str:
    """kubectl's error as one line: its klog record holds it as err="..." or as an indented err=< block."""
    if block := _ERR_BLOCK.search(stderr):
        return " ".join(line.strip() for line in block[1].splitlines() if line.strip())
    if quoted := _ERR_QUOTED.search(stderr):
        return quoted[1].replace('\\"', '"')
    lines = stderr.strip().splitlines()
    return lines[-1] if lines else ""


def render_overlay(argocd: Path, overlay: str) -> Rendered:
    folder = argocd / OVERLAYS_DIR / overlay
    if not (folder / "kustomization.yaml").is_file():
        raise UserError(f"{folder}: no such overlay (overlays: {', '.join(overlays(argocd))})")
    text = kustomize(folder)
    return Rendered(label=f"overlay {overlay}", objects=docs(text), text=text)


def overlays(argocd: Path) -> list[str]:
    return sorted(p.parent.name for p in (argocd / OVERLAYS_DIR).glob("*/kustomization.yaml"))


def fill_template(node: Any, params: dict[str, str]) -> Any:
    """The ApplicationSet template with a target's fields filled in (the Go-template subset it uses)."""
    if isinstance(node, dict):
        return {k: fill_template(v, params) for k, v in node.items()}
    if isinstance(node, list):
        return [fill_template(v, params) for v in node]
    if not isinstance(node, str):
        return node

    def field(name: str) -> str:
        if name not in params:
            raise UserError(f"ApplicationSet template: no field {name!r} in the fleet file")
        return params[name]

    text = _IF_EQ.sub(lambda m: m[3] if field(m[1]) == m[2] else m[4], node)
    text = _FIELD.sub(lambda m: field(m[1]), text)
    if "{{" in text:
        raise UserError(f"ApplicationSet template: unsupported template in {node!r}")
    return text


def application_for(argocd: Path, target: Target) -> dict[str, Any]:
    """The Application the ApplicationSet generates for one fleet target."""
    path = argocd / APPLICATIONSET_FILE
    appset = yaml.safe_load(path.read_text())
    params = {field: getattr(target, field) for field in FIELDS}
    template = fill_template(appset["spec"]["template"], params)
    metadata = dict(template.get("metadata", {}), namespace=ARGOCD_NAMESPACE)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": metadata,
        "spec": template["spec"],
    }


def render_target(argocd: Path, target: Target) -> Rendered:
    """Kustomize the Application's source path with the Application's kustomize options, as Argo CD does."""
    app = application_for(argocd, target)
    source = app["spec"]["source"]
    expected = f"{REPO_DIR}/{OVERLAYS_DIR}/{target.overlay}"
    if source["path"] != expected:
        raise UserError(
            f"{target.file}: the ApplicationSet sends kind {target.kind} to {source['path']}, not {expected}"
        )
    folder = argocd / OVERLAYS_DIR / target.overlay
    options = source.get("kustomize", {})
    unsupported = sorted(set(options) - {"commonAnnotations", "commonLabels", "patches", "images"})
    if unsupported:
        raise UserError(
            f"{argocd / APPLICATIONSET_FILE}: kustomize option {unsupported[0]!r} not rendered here"
        )
    with tempfile.TemporaryDirectory(prefix="pitlane-deploy-") as tmp:
        # kustomize refuses absolute resource paths, so the wrapper names the overlay relatively
        wrapper = {"resources": [os.path.relpath(folder.resolve(), tmp)], **options}
        Path(tmp, "kustomization.yaml").write_text(yaml.safe_dump(wrapper, sort_keys=False))
        text = kustomize(Path(tmp))
    return Rendered(label=f"target {target.name}", objects=docs(text), text=text, application=app)


def render(argocd: Path, name: str) -> Rendered:
    """A fleet target by name (e.g. car-1) or an overlay by name (nuc-sim, pi-car)."""
    fleet = {t.name: t for t in load_fleet(argocd)}
    if name in fleet:
        return render_target(argocd, fleet[name])
    if name in overlays(argocd):
        return render_overlay(argocd, name)
    raise UserError(
        f"unknown target {name!r}: fleet targets {', '.join(fleet)}; overlays {', '.join(overlays(argocd))}"
    )


def find_argocd(root: Path) -> Path:
    """The argocd/ folder of a repository root, or ROOT itself when it is one."""
    for candidate in (root / "argocd", root):
        if (candidate / OVERLAYS_DIR).is_dir() and (candidate / "fleet").is_dir():
            return candidate
    raise UserError(f"{root}: no argocd/ folder (with overlays/ and fleet/) here")


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]
