"""`pitlane deploy check`: the fleet files, the Argo CD objects and every render, validated offline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pitlane.deploy.fleet import load_fleet
from pitlane.deploy.pins import read_pins
from pitlane.deploy.render import docs, kustomize, overlays, render_overlay, render_target
from pitlane.deploy.validate import check_objects, object_name

BOOTSTRAP_DIR = Path("bootstrap")


def check(argocd: Path, released: bool = False, progress: Callable[[str], None] | None = None) -> list[str]:
    """Every problem found, one line each; [] means Argo CD would sync what the release meant.

    released: also require that no pin is still a placeholder (a release's GitOps bump must replace them).
    A fleet file or pin error stops the check at once (UserError): nothing else can be rendered right.
    """
    say = progress or (lambda _: None)
    fleet = load_fleet(argocd)
    pins = read_pins(argocd)
    problems = [f"{argocd}: not released: {p}" for p in pins.placeholders()] if released else []

    say("bootstrap (AppProject, ApplicationSet)")
    bootstrap = docs(kustomize(argocd / BOOTSTRAP_DIR))
    problems += check_objects("bootstrap", bootstrap)
    project = next((d for d in bootstrap if d.get("kind") == "AppProject"), None)
    if project is None:
        return [*problems, f"{argocd / BOOTSTRAP_DIR}: no AppProject"]
    problems += _repo_problems(bootstrap, project)

    for overlay in overlays(argocd):
        say(f"overlay {overlay}")
        rendered = render_overlay(argocd, overlay)
        problems += check_objects(rendered.label, rendered.objects)
    for target in fleet:
        say(f"target {target.name} ({target.kind}, {target.cluster})")
        rendered = render_target(argocd, target)
        assert rendered.application is not None
        problems += check_objects(f"{target.file}: Application", [rendered.application])
        problems += check_objects(rendered.label, rendered.objects)
        problems += _project_problems(rendered.label, rendered.objects, project)
    return problems


def _repo_problems(bootstrap: list[dict[str, Any]], project: dict[str, Any]) -> list[str]:
    """Every repoURL in the ApplicationSet must be one the AppProject allows."""
    allowed = set(project["spec"].get("sourceRepos") or [])
    problems = []
    for doc in bootstrap:
        if doc.get("kind") != "ApplicationSet":
            continue
        urls = [g["git"]["repoURL"] for g in doc["spec"].get("generators", []) if "git" in g]
        urls.append(doc["spec"]["template"]["spec"]["source"]["repoURL"])
        problems += [
            f"bootstrap: {object_name(doc)}: repoURL {u} is not in AppProject sourceRepos"
            for u in urls
            if u not in allowed
        ]
    return problems


def _project_problems(label: str, objects: list[dict[str, Any]], project: dict[str, Any]) -> list[str]:
    """Objects the AppProject would refuse to sync (a kind missing from its whitelists)."""
    spec = project["spec"]
    cluster = {(w["group"], w["kind"]) for w in spec.get("clusterResourceWhitelist") or []}
    namespaced = {(w["group"], w["kind"]) for w in spec.get("namespaceResourceWhitelist") or []}
    problems = []
    for obj in objects:
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        scoped = namespaced if (obj.get("metadata") or {}).get("namespace") else cluster
        if (group, obj.get("kind")) not in scoped:
            problems.append(
                f"{label}: {object_name(obj)}: kind not allowed by AppProject {project['metadata']['name']}"
            )
    return problems
