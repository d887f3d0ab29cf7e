"""notebooks/Fleet_Data.ipynb runs top to bottom and says in one line why there is nothing to pull."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "Fleet_Data.ipynb"


def _run(tmp_path: Path, monkeypatch, registry: str | None) -> str:
    from nbclient import NotebookClient

    if registry:
        monkeypatch.setenv("PITLANE_REGISTRY", registry)
    else:
        monkeypatch.delenv("PITLANE_REGISTRY", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )


@pytest.mark.slow
def test_without_a_registry_it_says_how_to_name_one(tmp_path, monkeypatch):
    text = _run(tmp_path, monkeypatch, None)
    assert "no fleet data to pull: registry: PITLANE_REGISTRY is not set" in text
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_a_registry_without_data_bundles_says_so(tmp_path, monkeypatch, registry):
    text = _run(tmp_path, monkeypatch, registry.host)
    assert text.count("no fleet data to pull:") == 1
    assert not (tmp_path / "data" / "tubs.txt").exists()
