"""The tools image every release step runs in, pinned by digest in one place: the `tools-image` param's
default in pipelines/pipeline.yaml (the one place Tekton reads it). A release that rebuilt the tools image
rewrites that line in its GitOps pull request, so the NEXT release runs in it once a reviewer merged it:
no release is ever signed by a tools image built from its own tag.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pitlane.errors import UserError
from pitlane.release.config import check_digest_ref

PIPELINE = Path("pipelines") / "pipeline.yaml"
PARAM = "tools-image"


def pinned(root: Path) -> str:
    """The tools image pipelines/pipeline.yaml pins (checked: by digest)."""
    doc = yaml.safe_load((Path(root) / PIPELINE).read_text())
    params = {p["name"]: p for p in doc["spec"]["params"]}
    return check_digest_ref(str(params[PARAM].get("default")), "tools image")


def pin(root: Path, ref: str) -> bool:
    """Point the tools-image default at `ref` (REPO@sha256:...); True when the file changed."""
    check_digest_ref(ref, "tools image")
    path = Path(root) / PIPELINE
    lines = path.read_text().splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == f"- name: {PARAM}"), None)
    if start is None:
        raise UserError(f"{path} has no param {PARAM}")
    for i in range(start + 1, len(lines)):
        m = re.match(r"^(\s+default: )(\S+)\s*$", lines[i])
        if m:
            if m[2] == ref:
                return False
            lines[i] = f"{m[1]}{ref}\n"
            path.write_text("".join(lines))
            assert pinned(root) == ref
            return True
        if lines[i].lstrip().startswith("- name:"):
            break
    raise UserError(f"{path}: param {PARAM} has no default to pin")
