"""`pitlane data stats`: counts per session, angle/throttle distributions, a PNG of them."""

from __future__ import annotations

import numpy as np

from pitlane.cli import main
from pitlane.data.stats import plot_stats, tub_stats


def test_stats_count_usable_records_per_session(make_tub):
    from donkeycar.parts.tub_v2 import Tub

    tub = make_tub(n=30)
    writer = Tub(str(tub))  # a second session appended to the same tub
    writer.input_types = dict(zip(writer.manifest.inputs, writer.manifest.types, strict=True))
    writer.write_record(
        {"user/angle": -0.5, "user/throttle": 0.2, "cam/image_array": np.zeros((120, 160, 3))}
    )
    writer.delete_records([0, 1])
    writer.close()
    stats = tub_stats(tub)
    assert stats.records == 29 and stats.deleted == 2
    assert sorted(stats.sessions.values()) == [1, 28]
    assert len(stats.angles) == 29 and stats.angles[-1] == -0.5
    assert len(stats.cte_m) == 28


def test_stats_cli_writes_png(make_tub, tmp_path, capsys):
    a, b = make_tub("a", n=25), make_tub("b", n=10, seed=1)
    png = tmp_path / "plots" / "stats.png"
    assert main(["data", "stats", str(tmp_path), "--out", str(png)]) == 0  # a folder of tubs
    out = capsys.readouterr().out
    assert f"{a}: 25 records" in out and f"{b}: 10 records" in out and "angle: mean" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(png).size[0] > 500


def test_stats_out_is_a_png_or_a_folder_and_says_which_file(make_tub, tmp_path, capsys):
    """`--out data` used to print `wrote data` and write data.png; now `data` is a folder."""
    tub = make_tub("a", n=12)
    folder = tmp_path / "data"
    assert main(["data", "stats", str(tub), "--out", str(folder)]) == 0
    assert (folder / "stats.png").is_file() and not (tmp_path / "data.png").exists()
    assert f"wrote {folder / 'stats.png'}" in capsys.readouterr().err
    assert main(["data", "stats", str(tub), "--out", str(tmp_path / "plot.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pitlane: error: --out ") and "give a .png file or a folder" in err
    assert err.count("\n") == 1
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    assert main(["data", "stats", str(tub), "--out", str(blocker / "stats.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pitlane: error: --out ") and "is a file, so the file cannot be created" in err
    assert err.count("\n") == 1  # checked before the tubs are read


def test_stats_refuses_non_tub(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path / "nothing")]) == 2
    assert "not a donkeycar tub" in capsys.readouterr().err


def test_plot_handles_tub_without_cte(make_tub, tmp_path):
    tub = make_tub(
        inputs=("cam/image_array", "user/angle", "user/throttle"), types=("image_array", "float", "float")
    )
    assert plot_stats([tub_stats(tub)], tmp_path / "s.png").stat().st_size > 1000
