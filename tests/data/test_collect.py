"""`pitlane data collect` writes tubs that donkeycar's own Tub and TubDataset read, with the right frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pitlane.cli import main
from pitlane.data.check import check_tub
from pitlane.data.collect import collect
from pitlane.data.tub import INPUTS, POSITION_KEYS
from pitlane.pilots.expert import NOISE_PRESETS, ExpertDriver
from pitlane.twin.sim import Sim

SCENE = "generated_track"


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("collect") / "tub"
    summary = collect(SCENE, laps=1, out=out, seed=3, noise="light", progress=False)
    return out, summary


@pytest.mark.slow
def test_donkeycar_reads_collected_tub(collected, donkey_read):
    from donkeycar.parts.tub_v2 import Tub

    out, summary = collected
    tub = Tub(str(out), read_only=True)
    records = list(tub)
    tub.close()
    assert tub.manifest.inputs == list(INPUTS)
    assert len(records) == summary.records > 300 and summary.laps == 1
    assert [r["_index"] for r in records] == list(range(summary.records))
    for r in records:
        assert set(r) == {*INPUTS, "_index", "_session_id", "_timestamp_ms"}
        assert -1.0 <= r["user/angle"] <= 1.0 and 0.0 <= r["user/throttle"] <= 1.0
        assert r["user/mode"] == "user" and r["pos/pos_y"] == 0.0
    cte = np.array([r["pos/cte"] for r in records])
    assert np.abs(cte).mean() == pytest.approx(summary.mean_abs_cte_m, rel=1e-6)
    assert np.abs(cte).mean() < 0.12
    assert len(donkey_read(out)) == summary.records  # TubDataset: every record with a (120, 160, 3) image
    assert check_tub(out).ok


@pytest.mark.slow
def test_records_are_the_expert_labels_and_frames_in_order(collected):
    """Replaying the same seed gives the recorded labels exactly and the recorded frames (up to JPEG)."""
    from PIL import Image

    out, summary = collected
    lines = [json.loads(line) for line in (out / "catalog_0.catalog").read_text().splitlines()]
    sim = Sim(SCENE, seed=3)
    driver = ExpertDriver(sim.track, noise=NOISE_PRESETS["light"], seed=3)
    t = sim.reset()
    steered_differently = 0
    for i, record in enumerate(lines[:200]):
        frame = sim.render()
        label, executed = driver.act(t)
        assert record["user/angle"] == label.steering and record["user/throttle"] == label.throttle
        assert record["pos/pos_x"] == t.x_m and record["pos/pos_z"] == t.y_m and record["pos/cte"] == t.cte_m
        steered_differently += executed.steering != label.steering
        if i % 50 == 0:
            saved = np.asarray(Image.open(out / "images" / record["cam/image_array"]), dtype=np.float64)
            assert np.abs(saved - frame).mean() < 4.0, f"record {i} holds another frame"
        t = sim.step(executed)
    assert steered_differently > 150  # the car executed perturbed commands while the labels stayed correct


@pytest.mark.slow
def test_cli_collect_appends_a_session_per_run(tmp_path, capsys):
    out = tmp_path / "tub"
    argv = [
        "data",
        "collect",
        "--scene",
        "generated_road",
        "--laps",
        "1",
        "--out",
        str(out),
        "--noise",
        "none",
    ]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "records/s" in first and "mean |CTE|" in first
    assert main([*argv, "--seed", "1", "--steer-noise", "0.1"]) == 0
    lines = [
        json.loads(line) for p in sorted(out.glob("catalog_*.catalog")) for line in p.read_text().splitlines()
    ]
    sessions = list(dict.fromkeys(r["_session_id"] for r in lines))
    assert len(sessions) == 2 and [r["_index"] for r in lines] == list(range(len(lines)))
    manifest = (out / "manifest.json").read_text().splitlines()
    assert json.loads(manifest[3])["sessions"]["all_full_ids"] == sessions
    assert check_tub(out).ok


def test_cli_collect_refuses_bad_input(tmp_path, capsys):
    assert main(["data", "collect", "--scene", "nowhere", "--laps", "1", "--out", str(tmp_path / "t")]) == 2
    assert "unknown scene 'nowhere'" in capsys.readouterr().err
    assert not (tmp_path / "t").exists(), "a failed collect must not leave an empty tub behind"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["data", "collect", "--scene", SCENE, "--out", str(other)]) == 2
    assert "not a tub" in capsys.readouterr().err
    assert main(["data", "collect", "--scene", SCENE, "--laps", "0", "--out", str(tmp_path / "t")]) == 2
    assert (
        main(["data", "collect", "--scene", SCENE, "--out", str(tmp_path / "t"), "--steer-noise", "nan"]) == 2
    )
    assert (other / "notes.txt").read_text() == "mine"


def test_position_keys_match_donkeycar_sim_record_location():
    """Our extras are exactly what donkeycar's complete.py records with SIM_RECORD_LOCATION."""
    import inspect

    import donkeycar.templates.complete as complete

    assert f"inputs += {list(POSITION_KEYS)}" in inspect.getsource(complete)


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["thread", "inline"])
def test_every_writer_mode_writes_the_same_records(tmp_path, writer, collected):
    reference, summary = collected
    out = tmp_path / writer
    other = collect(SCENE, laps=1, out=out, seed=3, noise="light", progress=False, writer=writer)
    assert other.records == summary.records

    def labels(tub: Path) -> list:
        return [
            (r["_index"], r["user/angle"], r["pos/cte"])
            for r in map(json.loads, (tub / "catalog_0.catalog").read_text().splitlines())
        ]

    assert labels(out) == labels(reference)
    assert check_tub(out).ok


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_collect_into_a_tub_with_a_stale_manifest_refuses_then_appends_after_the_fix(tmp_path, capsys):
    from tests.data.conftest import write_tub

    tub = write_tub(tmp_path / "tub", n=20)
    lines = (tub / "manifest.json").read_text().splitlines()
    catalog_meta = json.loads(lines[4])
    catalog_meta["current_index"] = 5  # a manifest copied before the last 15 records were written
    lines[4] = json.dumps(catalog_meta)
    (tub / "manifest.json").write_text("\n".join(lines) + "\n")
    before = _tree(tub)
    argv = ["data", "collect", "--scene", SCENE, "--laps", "1", "--noise", "none", "--out", str(tub)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "manifest says 5 records but the catalogs hold 20" in err and "check --fix" in err
    assert _tree(tub) == before, "a refused collect must not touch the tub"

    assert main(["data", "check", "--fix", str(tub)]) == 0
    assert main(argv) == 0
    after = _tree(tub)
    assert all(after[name] == data for name, data in before.items() if name.startswith("images/"))
    records = [json.loads(x) for x in (tub / "catalog_0.catalog").read_text().splitlines()]
    assert [r["_index"] for r in records] == list(range(len(records))) and len(records) > 20
    assert check_tub(tub).ok


def test_collect_refuses_a_tub_whose_images_run_ahead_of_its_manifest(tmp_path, capsys):
    from tests.data.conftest import write_tub

    tub = write_tub(tmp_path / "tub", n=3)
    (tub / "images" / "3_cam_image_array_.jpg").write_bytes(b"someone else's frame")
    before = _tree(tub)
    argv = ["data", "collect", "--scene", SCENE, "--laps", "1", "--out", str(tub)]
    assert main(argv) == 2
    assert "images/3_cam_image_array_.jpg" in capsys.readouterr().err
    assert _tree(tub) == before


class _ListWriter:
    """Keeps the records a collection writes, in memory."""

    def __init__(self):
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        self.records.append(record)


def _drive(scene: str = "waveshare", **options):
    from pitlane.data.collect import Options, _drive_scene, _make_sim
    from pitlane.twin.camera import CameraParams

    opts = Options(**options)
    sim = _make_sim(scene, 0, CameraParams(), opts)
    writer = _ListWriter()
    result = _drive_scene(sim, scene, 1, 0, NOISE_PRESETS["none"], 0.05, writer, None, opts)  # type: ignore[arg-type]
    return writer.records, result


def test_a_flipped_record_is_mirrored_with_its_steering_negated():
    from pitlane.data.collect import flipped

    frame = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    record = {"cam/image_array": frame, "user/angle": 0.4, "user/throttle": 0.3, "pos/cte": 0.1}
    mirror = flipped(record)
    assert mirror["user/angle"] == -0.4 and mirror["pos/cte"] == -0.1 and mirror["user/throttle"] == 0.3
    assert np.array_equal(mirror["cam/image_array"], frame[:, ::-1]) and record["user/angle"] == 0.4


def test_flip_writes_a_mirrored_record_beside_each():
    records, result = _drive(flip=True)
    assert len(records) == result.records and len(records) % 2 == 0
    for a, b in zip(records[::2][::40], records[1::2][::40], strict=True):
        assert b["user/angle"] == -a["user/angle"]
        assert np.array_equal(b["cam/image_array"], a["cam/image_array"][:, ::-1])


def test_a_cw_collection_drives_the_other_way_round():
    ccw, _ = _drive(direction="ccw")
    cw, result = _drive(direction="cw")
    assert result.laps == 1
    assert ccw[10]["pos/pos_x"] > ccw[0]["pos/pos_x"] and cw[10]["pos/pos_x"] < cw[0]["pos/pos_x"]
    # the loop turns left driven ccw and right driven cw: the expert's mean steering says which
    assert np.mean([r["user/angle"] for r in ccw]) < 0 < np.mean([r["user/angle"] for r in cw])


def test_dagger_lets_the_pilot_drive_and_labels_with_the_expert():
    calls = []

    def straight_on(frame):  # a poor model: never steers
        calls.append(frame.shape)
        return 0.0, 0.4

    records, result = _drive(pilot=straight_on)
    assert result.laps == 1  # the expert takes over far off the line, so the lap is finished
    assert 0 < len(calls) < len(records)
    angles = np.array([r["user/angle"] for r in records])
    assert np.abs(angles).max() > 0.5  # labels are the expert's corrections, not the pilot's zeros
    assert result.max_abs_cte_m > 0.2  # the states visited are the pilot's, off the expert's line


def test_randomized_collection_frames_differ_from_plain_ones():
    plain, _ = _drive()
    randomized, _ = _drive(randomize=True)
    assert not np.array_equal(plain[5]["cam/image_array"], randomized[5]["cam/image_array"])


def test_line_styles_repaint_lines_and_floor_while_colours_alone_keep_the_lines():
    from pitlane.data.collect import Options, _make_sim
    from pitlane.twin.camera import CameraParams
    from pitlane.twin.family import family_style
    from pitlane.twin.scenes import load_scene, random_style

    own = load_scene("family:train:3").style
    for index in (0, 1):
        sim = _make_sim(
            "family:train:3",
            0,
            CameraParams(),
            Options(randomize=True, line_styles=True, style_seed=5),
            index,
        )
        assert sim.track.style == family_style(5 + 7919 * index)
        coloured = _make_sim(
            "family:train:3", 0, CameraParams(), Options(randomize=True, style_seed=5), index
        )
        s = coloured.track.style
        assert s.ground_rgb == random_style(5 + 7919 * index).ground_rgb
        assert (s.edge_line, s.center_line, s.edge_rgb, s.center_rgb) == (
            own.edge_line,
            own.center_line,
            own.edge_rgb,
            own.center_rgb,
        )
