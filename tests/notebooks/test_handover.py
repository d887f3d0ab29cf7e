"""The notebooks hand over to each other and are saved with their outputs (so GitHub shows the plots)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
# the notebooks that draw (training curves, tub statistics); Fleet_Data lists and pulls bundles: text only
PLOTTING = ("Download_Data.ipynb", "simple_train.ipynb")


def _parameters(name: str) -> dict[str, object]:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values: dict[str, object] = {}
    exec(cell.source, {}, values)  # the parameters cell is plain assignments
    return values


def test_download_data_hands_its_tubs_to_simple_train():
    download, train = _parameters("Download_Data.ipynb"), _parameters("simple_train.ipynb")
    assert train["TUBS_FILE"] == f"{download['OUT']}/tubs.txt"
    source = (NOTEBOOKS / "Download_Data.ipynb").read_text()
    assert "tubs.txt" in source and "simple_train.ipynb" in source


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_name_only_notebooks_that_exist_and_keep_their_outputs(path):
    for name in set(re.findall(r"[\w./-]+\.ipynb", path.read_text())):
        assert (NOTEBOOKS / Path(name).name).is_file(), f"{path.name} points to a missing {name}"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name} is not saved executed (make notebooks)"
    images = [o for c in code for o in c.get("outputs", []) if o.get("data", {}).get("image/png")]
    assert images or path.name not in PLOTTING, f"{path.name} is saved without its plots (make notebooks)"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
