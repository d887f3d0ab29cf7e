"""Provenance: file and tub digests (by content, in a fixed order), the run record's file round trip, the
code's git commit."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from pitlane.errors import UserError
from pitlane.provenance import (
    SCHEMA,
    RunRecord,
    TubDigest,
    data_digest,
    file_digest,
    git_commit,
    run_record_path,
    tub_digest,
)


def make_tub(root, images: dict[str, bytes]):
    (root / "images").mkdir(parents=True)
    (root / "manifest.json").write_text('{"inputs": []}\n')
    (root / "catalog_0.catalog").write_text('{"_index": 0}\n')
    for name, data in images.items():
        (root / "images" / name).write_bytes(data)
    return root


def test_file_digest_is_the_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "pilot.tflite"
    path.write_bytes(b"x" * 3_000_000)  # over one read chunk
    assert file_digest(path) == "sha256:" + hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_tub_digest_covers_data_files_only_and_not_their_order_on_disk(tmp_path):
    a = make_tub(tmp_path / "a", {"0_cam.jpg": b"one", "1_cam.jpg": b"two"})
    b = make_tub(tmp_path / "b", {"1_cam.jpg": b"two", "0_cam.jpg": b"one"})  # created in another order
    assert tub_digest(a) == tub_digest(b)
    (a / "pilot.keras").write_bytes(b"a model someone dropped here")
    (a / "logs").mkdir()
    assert tub_digest(a) == tub_digest(b)  # not part of the data
    (b / "images" / "1_cam.jpg").write_bytes(b"TWO")
    assert tub_digest(a) != tub_digest(b)
    (tmp_path / "c").mkdir()
    c = make_tub(tmp_path / "c" / "t", {"0_cam.jpg": b"one", "1_cam.jpg": b"two"})
    c.joinpath("images", "0_cam.jpg").rename(c / "images" / "2_cam.jpg")  # same bytes, other name
    assert tub_digest(c) != tub_digest(a)


def test_data_digest_depends_on_the_tubs_and_their_order():
    one, two = TubDigest("a", 1, "sha256:1"), TubDigest("b", 2, "sha256:2")
    assert data_digest((one, two)) != data_digest((two, one))
    assert data_digest((one, two)) == data_digest((TubDigest("elsewhere", 9, "sha256:1"), two))


def record(tmp_path) -> RunRecord:
    return RunRecord(
        model_type="linear",
        model_path=str(tmp_path / "pilot.keras"),
        tflite_path=None,
        input_shape=(120, 160, 3),
        tubs=(TubDigest("tub", 10, "sha256:ab"),),
        data_digest="sha256:cd",
        records_total=10,
        params={"epochs": 2},
        history={"loss": [1.0, 0.5]},
        epochs_run=2,
        best_val_loss=0.5,
        git_commit="unknown",
        git_dirty=False,
        versions={"pitlane": "0.1.0"},
        timings_s={"total": 1.0},
        created_at="2025-01-01T00:00:00+00:00",
    )


def test_a_run_record_saves_beside_its_model_and_loads_back(tmp_path):
    rec = record(tmp_path)
    path = rec.save(run_record_path(tmp_path / "pilot.tflite"))
    assert path.name == "pilot.run.json" and run_record_path(tmp_path / "pilot.keras") == path
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA and data["input_shape"] == [120, 160, 3]
    assert RunRecord.load(path) == rec
    data["unknown_later_field"] = 1  # a newer writer's field does not break an older reader
    path.write_text(json.dumps(data))
    assert RunRecord.load(path) == rec


def test_a_bad_run_record_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        RunRecord.load(tmp_path / "missing.run.json")
    bad = tmp_path / "bad.run.json"
    bad.write_text('{"model_type": "linear"}')
    with pytest.raises(UserError, match="is not a valid pitlane run record"):
        RunRecord.load(bad)


def test_git_commit_of_a_checkout_and_outside_one(tmp_path):
    assert git_commit(tmp_path) == ("unknown", False)

    def run(*argv: str) -> None:
        subprocess.run(["git", *argv], cwd=tmp_path, check=True, capture_output=True)

    run("init", "-q")
    (tmp_path / "f").write_text("1")
    run("add", "f")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    commit, dirty = git_commit(tmp_path)
    assert len(commit) == 40 and not dirty
    (tmp_path / "f").write_text("2")
    assert git_commit(tmp_path) == (commit, True)
