#!/usr/bin/env python3
"""Extract strict JSON Schemas from upstream CustomResourceDefinitions, for validating manifests offline.

Reads every CRD under SCHEMAS/<dir> (default: ../shared/schemas next to the repository, where CI keeps the
upstream CRDs) and writes OUT/<group>/<Kind>.<version>.json (default: pitlane/deploy/schemas, package data), which the repository
vendors so a user's clone validates without ../shared. A CRD's openAPIV3Schema accepts unknown fields, so
this tightens it the way the API server's structural-schema pruning would reject them:

- `additionalProperties: false` wherever a node lists `properties` and is not
  `x-kubernetes-preserve-unknown-fields` (so a misspelt `taskReff` fails);
- `x-kubernetes-int-or-string` becomes "integer or string", `nullable: true` adds "null";
- descriptions are dropped (size); apiVersion and kind are pinned to the CRD's.

Usage: python tools/extract_crd_schemas.py [--schemas DIR] [--out DIR] [--only KIND[.VERSION]] [SUBDIR ...]
  e.g. tools/extract_crd_schemas.py tekton tekton-triggers   (Tekton)   or   argocd policy-controller
       tools/extract_crd_schemas.py --only RayCluster.v1 kuberay   (the one KubeRay kind argocd/ uses)
Shared by every area that vendors CRD schemas (pipelines/, argocd/); rerun it when ../shared/schemas moves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def strict(node: Any) -> Any:
    """A copy of an OpenAPI v3 schema node as JSON Schema that rejects unknown fields."""
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in (
            "description",
            "x-kubernetes-list-type",
            "x-kubernetes-list-map-keys",
            "x-kubernetes-map-type",
        ):
            continue
        if key == "properties":
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") or key in ("allOf", "anyOf", "oneOf"):
            out[key] = strict(value)
        else:
            out[key] = value
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and not preserve and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.pop("x-kubernetes-embedded-resource", False):
        out.setdefault("type", "object")
    return out


def extract(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{'<Kind>.<version>': JSON Schema} for each version of one CRD that has a schema."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    schemas = {}
    for version in spec["versions"]:
        raw = (version.get("schema") or {}).get("openAPIV3Schema")
        if raw is None:
            continue
        schema = strict(raw)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$comment"] = f"extracted from the {kind} CRD ({group}) by tools/extract_crd_schemas.py"
        props = schema.setdefault("properties", {})
        props["apiVersion"] = {"const": f"{group}/{version['name']}"}
        props["kind"] = {"const": kind}
        # the API server gives every object ObjectMeta, even where a CRD's schema leaves it out (policy-controller)
        props.setdefault("metadata", {"type": "object"})
        schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind"})
        schemas[f"{kind}.{version['name']}"] = schema
    return schemas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", metavar="SUBDIR", help="sub-folders of --schemas (default: all)")
    parser.add_argument("--schemas", type=Path, default=ROOT.parent / "shared" / "schemas")
    parser.add_argument("--out", type=Path, default=ROOT / "pitlane" / "deploy" / "schemas")
    parser.add_argument(
        "--only", action="append", metavar="KIND[.VERSION]", help="these kinds only (e.g. RayCluster.v1)"
    )
    args = parser.parse_args(argv)
    if not args.schemas.is_dir():
        print(
            f"extract_crd_schemas: error: no CRD folder at {args.schemas} (pass --schemas)", file=sys.stderr
        )
        return 2
    dirs = (
        [args.schemas / d for d in args.dirs]
        if args.dirs
        else sorted(p for p in args.schemas.iterdir() if p.is_dir())
    )
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                for name, schema in extract(doc).items():
                    if args.only and not {name, name.split(".")[0]} & set(args.only):
                        continue
                    target = args.out / doc["spec"]["group"] / f"{name}.json"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                    print(
                        f"{path.relative_to(args.schemas)} -> {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
