"""Checks on rendered manifests, offline: schemas, digest pins, limits, security contexts.

Core kinds are checked against Kubernetes' own schemas (kubernetes-validate, strict: an unknown field
fails); Argo CD and policy-controller objects against JSON Schemas extracted from their upstream CRDs
(tools/extract_crd_schemas.py, vendored as package data under pitlane/deploy/schemas, unknown fields rejected). Each problem is one
line naming the render, the object and the field.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from pitlane.artifacts.oci import Reference
from pitlane.errors import BadInput, UserError

KUBERNETES_VERSION = "1.32.0"  # MicroShift 4.19's Kubernetes
SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
CRD_GROUPS: tuple[str, ...] = ("argoproj.io", "policy.sigstore.dev", "ray.io")
POD_TEMPLATE_KINDS: tuple[str, ...] = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def object_name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {ns}{meta.get('name')}"


def schema_problems(obj: dict[str, Any]) -> list[str]:
    """Schema violations of one object ('spec.x: message'), [] when it is valid."""
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    if group in CRD_GROUPS:
        return _crd_problems(obj, group)
    # Lazy: jsonschema's format extras take seconds to import, and `pitlane twin serve` must not pay it.
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {obj.get('apiVersion')} {obj.get('kind')} (Kubernetes {KUBERNETES_VERSION})"]
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "(top)"
        return [f"{where}: {exc.message}"]
    return []


def _crd_problems(obj: dict[str, Any], group: str) -> list[str]:
    version = str(obj.get("apiVersion")).rpartition("/")[2]
    validator = _validator(group, str(obj.get("kind")), version)
    if validator is None:
        return [f"no schema for {obj.get('apiVersion')} {obj.get('kind')} under {SCHEMAS_DIR / group}"]
    problems = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in err.absolute_path) or "(top)"
        problems.append(f"{where}: {err.message}")
    return problems


@cache
def _validator(group: str, kind: str, version: str) -> Any:
    import jsonschema  # lazy, as above

    path = SCHEMAS_DIR / group / f"{kind}.{version}.json"
    if not path.is_file():
        if not SCHEMAS_DIR.is_dir():
            raise UserError(
                f"{SCHEMAS_DIR}: the vendored CRD schemas are missing (tools/extract_crd_schemas.py)"
            )
        return None
    return jsonschema.Draft202012Validator(json.loads(path.read_text()))


def is_digest_pinned(image: str) -> bool:
    """`REGISTRY/REPO@sha256:<64 hex>`: an image a rendered manifest may run (a tag can move)."""
    try:
        return Reference.parse(image).pinned
    except BadInput:
        return False


def pod_templates(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod template) of each pod an object makes: a workload's one, a RayCluster's head and worker
    groups'."""
    spec = obj.get("spec") or {}
    if obj.get("kind") in POD_TEMPLATE_KINDS:
        return [("spec.template", spec.get("template") or {})]
    if obj.get("kind") == "RayCluster":
        head = [("spec.headGroupSpec.template", (spec.get("headGroupSpec") or {}).get("template") or {})]
        return head + [
            (f"spec.workerGroupSpecs[{g.get('groupName')}].template", g.get("template") or {})
            for g in spec.get("workerGroupSpecs") or []
        ]
    return []


def workload_problems(obj: dict[str, Any]) -> list[str]:
    """Every container pinned by digest, with CPU and memory limits and a restrictive securityContext."""
    problems = []
    for where, template in pod_templates(obj):
        problems += _pod_problems(where, template.get("spec") or {})
    return problems


def _pod_problems(where: str, pod: dict[str, Any]) -> list[str]:
    pod_sc = pod.get("securityContext") or {}
    problems = []
    for field in ("initContainers", "containers"):
        for c in pod.get(field) or []:
            at = f"{where}.spec.{field}[{c.get('name')}]"
            image = str(c.get("image", ""))
            if not is_digest_pinned(image):
                problems.append(f"{at}.image: {image!r} is not pinned by digest (REPO@sha256:<64 hex>)")
            limits = (c.get("resources") or {}).get("limits") or {}
            for resource in ("cpu", "memory"):
                if resource not in limits:
                    problems.append(f"{at}.resources.limits.{resource}: missing")
            sc = c.get("securityContext")
            if not sc:
                problems.append(f"{at}.securityContext: missing")
                continue
            if sc.get("privileged"):
                problems.append(
                    f"{at}.securityContext.privileged: true (pitlane needs no privileged container)"
                )
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}.securityContext.allowPrivilegeEscalation: must be false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{at}.securityContext.capabilities.drop: must drop ALL")
            if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
                problems.append(f"{at}.securityContext.runAsNonRoot: must be true (here or in the pod's)")
    return problems


def check_objects(label: str, objects: list[dict[str, Any]]) -> list[str]:
    """All problems of one render, each as '<label>: <Kind ns/name>: <field>: <what>'."""
    problems = []
    for obj in objects:
        for problem in schema_problems(obj) + workload_problems(obj):
            problems.append(f"{label}: {object_name(obj)}: {problem}")
    return problems
