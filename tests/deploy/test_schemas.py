"""The vendored CRD schemas are what tools/extract_crd_schemas.py makes of ../shared/schemas today."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO

SHARED = REPO.parent / "shared" / "schemas"
GROUPS = {"argocd": "argoproj.io", "policy-controller": "policy.sigstore.dev", "kuberay": "ray.io"}
ONLY = ["RayCluster.v1"]  # of KubeRay's kinds, the one argocd/ uses (the others are 1.5 MB unused)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="no ../shared/schemas beside this clone (CI has it)")
def test_vendored_schemas_match_a_fresh_extraction(tmp_path):
    tool = [sys.executable, str(REPO / "tools" / "extract_crd_schemas.py"), "--schemas", str(SHARED)]
    subprocess.run(
        [*tool, "--out", str(tmp_path), *[d for d in GROUPS if d != "kuberay"]],
        check=True,
        capture_output=True,
    )
    only = [a for kind in ONLY for a in ("--only", kind)]
    subprocess.run([*tool, "--out", str(tmp_path), *only, "kuberay"], check=True, capture_output=True)
    for group in GROUPS.values():
        fresh = sorted(p.name for p in (tmp_path / group).glob("*.json"))
        vendored = sorted(p.name for p in (REPO / "pitlane" / "deploy" / "schemas" / group).glob("*.json"))
        assert fresh == vendored
        for name in fresh:
            assert (tmp_path / group / name).read_text() == (
                REPO / "pitlane" / "deploy" / "schemas" / group / name
            ).read_text(), name
