"""notebooks/Download_Data.ipynb runs top to bottom: collecting in the twin, or downloading a tub tarball."""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "Download_Data.ipynb"


def run_notebook(tmp_path: Path, **params) -> nbformat.NotebookNode:
    """Execute the notebook with `params` injected after its parameters cell (as papermill does)."""
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in params.items())))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.slow
def test_collects_in_the_twin_by_default(tmp_path):
    nb = run_notebook(tmp_path, SCENES=["generated_road"], LAPS=1, OUT=str(tmp_path / "data"))
    text = outputs(nb)
    tub = tmp_path / "data" / next(p.name for p in (tmp_path / "data").glob("tub_1_*"))
    assert (tub / "manifest.json").is_file() and len(list((tub / "images").glob("*.jpg"))) > 200
    assert "records/s" in text and f"{tub}: " in text and "1/1 tubs OK" in text
    assert (tmp_path / "data" / "tubs.txt").read_text() == f"{tub}\n"  # the hand-over to simple_train.ipynb
    assert (tmp_path / "data" / "stats.png").stat().st_size > 10_000
    assert any(o.get("data", {}).get("image/png") for c in nb.cells for o in c.get("outputs", []))


def _make_tub(path: Path, n: int) -> Path:
    import numpy as np
    from donkeycar.parts.tub_v2 import Tub

    tub = Tub(str(path), inputs=["cam/image_array", "user/angle", "user/throttle"],
              types=["image_array", "float", "float"])
    for i in range(n):
        image = np.full((120, 160, 3), 10 * i, dtype=np.uint8)
        tub.write_record({"cam/image_array": image, "user/angle": i / n, "user/throttle": 0.4})
    tub.close()
    return path


def _tarball(folder: Path, tub: Path) -> Path:
    archive = folder / "tubs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tub, arcname=f"mydata/{tub.name}")
    return archive


@pytest.mark.slow
def test_downloads_and_checks_a_tarball_over_http(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    tub = _make_tub(tmp_path / "tub_7", n=12)
    (tub / "images" / "5_cam_image_array_.jpg").unlink()  # a fault the notebook's check must report
    _tarball(served, tub)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tubs.tar.gz"
        nb = run_notebook(tmp_path, URL=url, OUT=str(tmp_path / "data"), FIX=True)
    finally:
        server.shutdown()
        server.server_close()
    unpacked = tmp_path / "data" / "tubs" / "mydata" / "tub_7"
    text = outputs(nb)
    assert (unpacked / "manifest.json").is_file()
    assert "record 5: image 5_cam_image_array_.jpg is missing" in text
    assert "marked 1 records deleted" in text
    from pitlane.data.check import check_tub

    assert check_tub(unpacked).ok


@pytest.mark.slow
def test_refuses_a_tarball_that_escapes_its_folder(tmp_path):
    from nbclient.exceptions import CellExecutionError

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        payload = b"overwritten"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(CellExecutionError, match="outside the destination"):
        run_notebook(tmp_path, URL=archive.as_uri(), OUT=str(tmp_path / "a" / "b"))
    assert not list(tmp_path.rglob("escaped.txt"))
