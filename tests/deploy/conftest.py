"""Fixtures for the deploy tests: a private copy of the repository's argocd/ tree to change freely."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARGOCD = REPO / "argocd"


@pytest.fixture
def argocd(tmp_path: Path) -> Path:
    """tmp/argocd: a copy of the repository's argocd/ (the real manifests, not a sample)."""
    return Path(shutil.copytree(ARGOCD, tmp_path / "argocd"))
