"""The tub checker finds each injected fault (tub, record, reason), and --fix leaves a tub donkeycar reads."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pitlane.cli import main
from pitlane.data.check import check_tub, fix_tub
from pitlane.data.tub import INPUTS, POSITION_KEYS, TYPES

N = 20


def _catalog_lines(tub: Path) -> list[str]:
    return (tub / "catalog_0.catalog").read_text().splitlines()


def _rewrite_record(tub: Path, index: int, **changes) -> None:
    lines = _catalog_lines(tub)
    record = json.loads(lines[index])
    record.update(changes)
    lines[index] = json.dumps(record, sort_keys=True)  # NaN written as donkeycar never would (allow_nan)
    (tub / "catalog_0.catalog").write_text("\n".join(lines) + "\n")


def _fault_corrupt_jpeg(tub: Path) -> tuple[int | None, str]:
    image = tub / "images" / "7_cam_image_array_.jpg"
    image.write_bytes(image.read_bytes()[:300])
    return 7, "does not decode"


def _fault_garbage_jpeg(tub: Path) -> tuple[int | None, str]:
    (tub / "images" / "3_cam_image_array_.jpg").write_bytes(b"\xff\xd8not a jpeg at all" * 10)
    return 3, "does not decode"


def _fault_truncated_catalog_line(tub: Path) -> tuple[int | None, str]:
    data = (tub / "catalog_0.catalog").read_bytes()
    (tub / "catalog_0.catalog").write_bytes(data[:-40])  # a crash in the middle of writing the last record
    return N - 1, "truncated record"


def _fault_nan_angle(tub: Path) -> tuple[int | None, str]:
    _rewrite_record(tub, 5, **{"user/angle": math.nan})
    return 5, "user/angle is nan"


def _fault_missing_image(tub: Path) -> tuple[int | None, str]:
    (tub / "images" / "11_cam_image_array_.jpg").unlink()
    return 11, "image 11_cam_image_array_.jpg is missing"


def _fault_throttle_out_of_range(tub: Path) -> tuple[int | None, str]:
    _rewrite_record(tub, 2, **{"user/throttle": 1.7})
    return 2, "outside [-1, 1]"


def _fault_timestamp_backwards(tub: Path) -> tuple[int | None, str]:
    _rewrite_record(tub, 9, _timestamp_ms=1)
    return 9, "earlier than record 8"


def _fault_wrong_shape(tub: Path) -> tuple[int | None, str]:
    from PIL import Image

    Image.new("RGB", (80, 60)).save(tub / "images" / "4_cam_image_array_.jpg")
    return 4, "has shape (60, 80, 3), expected (120, 160, 3)"


FAULTS = [
    _fault_corrupt_jpeg,
    _fault_garbage_jpeg,
    _fault_truncated_catalog_line,
    _fault_nan_angle,
    _fault_missing_image,
    _fault_throttle_out_of_range,
    _fault_timestamp_backwards,
    _fault_wrong_shape,
]


def test_clean_tub_passes(make_tub, donkey_read):
    tub = make_tub()
    report = check_tub(tub)
    assert report.ok, report.problems
    assert report.records == N and report.shapes == {"cam/image_array": (120, 160, 3)}
    assert len(donkey_read(tub)) == N


@pytest.mark.parametrize("inject", FAULTS, ids=lambda f: f.__name__.removeprefix("_fault_"))
def test_fault_is_found_and_fixed(make_tub, donkey_read, inject, capsys):
    tub = make_tub()
    index, reason = inject(tub)
    report = check_tub(tub)
    assert [(p.index, p.tub) for p in report.problems] == [(index, str(tub))], report.problems
    assert reason in report.problems[0].reason
    files_before = {p.name for p in tub.rglob("*")}
    bytes_before = {p.name: p.read_bytes() for p in tub.iterdir() if p.is_file()}

    assert main(["data", "check", str(tub)]) == 1
    assert f"record {index}: " in capsys.readouterr().out
    assert main(["data", "check", "--fix", str(tub)]) == 0
    out = capsys.readouterr().out
    assert f"marked 1 records deleted (manifest deleted_indexes): {index}" in out

    assert files_before <= {p.name for p in tub.rglob("*")}, "--fix must never remove files"
    records = donkey_read(tub)
    assert [r["_index"] for r in records] == [i for i in range(N) if i != index]
    assert check_tub(tub).ok
    assert main(["data", "check", str(tub)]) == 0

    assert main(["data", "check", "--undo", str(tub)]) == 0  # every changed file back, byte for byte
    assert {p.name: p.read_bytes() for p in tub.iterdir() if p.is_file()} == bytes_before
    assert [(p.index, p.reason) for p in check_tub(tub).problems] == [
        (p.index, p.reason) for p in report.problems
    ]


def test_fix_output_has_no_donkeycar_banner(make_tub):
    """`data check --fix` imports donkeycar's Tub mid-report: its banner used to land in the middle of it.
    A fresh interpreter, because this test process imported donkeycar long ago."""
    tub = make_tub(n=6)
    _fault_corrupt_jpeg_at(tub, 2)
    code = (
        f"import sys; from pitlane.cli import main; sys.exit(main(['data', 'check', '--fix', {str(tub)!r}]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "marked 1 records deleted (manifest deleted_indexes): 2" in run.stdout
    assert "using donkey v" not in run.stdout + run.stderr and "_____" not in run.stdout
    assert run.stderr == ""


def _fault_corrupt_jpeg_at(tub: Path, index: int) -> None:
    image = tub / "images" / f"{index}_cam_image_array_.jpg"
    image.write_bytes(image.read_bytes()[:300])


def test_truncated_line_fix_keeps_original_and_appends_cleanly(make_tub, donkey_read):
    from donkeycar.parts.tub_v2 import Tub

    tub = make_tub()
    original = (tub / "catalog_0.catalog").read_bytes()[:-40]
    (tub / "catalog_0.catalog").write_bytes(original)
    actions = fix_tub(check_tub(tub))
    assert any("original kept as catalog_0.catalog.orig" in a for a in actions)
    assert (tub / "catalog_0.catalog.orig").read_bytes() == original
    # A later recording session appends to the repaired tub without gluing onto the broken line.
    writer = Tub(str(tub), inputs=list(INPUTS), types=list(TYPES))
    writer.write_record({"cam/image_array": np.zeros((120, 160, 3), np.uint8), "user/angle": 0.25})
    writer.close()
    raw_last = json.loads(_catalog_lines(tub)[-1])
    assert raw_last["_index"] == N and raw_last["user/angle"] == 0.25


def test_manifest_from_another_tub_is_found_and_rebuilt(make_tub, donkey_read):
    tub = make_tub("a")
    other = make_tub(
        "b",
        n=7,
        inputs=("cam/image_array", "user/angle", "user/throttle", "user/mode"),
        types=("image_array", "float", "float", "str"),
    )
    shutil.copy(other / "manifest.json", tub / "manifest.json")
    report = check_tub(tub)
    reasons = " | ".join(p.reason for p in report.problems)
    assert [p.index for p in report.problems] == [None], reasons
    assert "does not belong" in reasons and "pos/cte" in reasons
    actions = fix_tub(report)
    assert any("rebuilt manifest.json" in a for a in actions)
    assert (tub / "manifest.json.orig").read_bytes() == (other / "manifest.json").read_bytes()
    records = donkey_read(tub)
    assert len(records) == N and all(k in records[0] for k in POSITION_KEYS)
    assert check_tub(tub).ok


def test_empty_tub_is_reported_not_crashing(make_tub, capsys):
    tub = make_tub("empty", n=0)
    report = check_tub(tub)
    assert [p.index for p in report.problems] == [None]
    assert "empty tub" in report.problems[0].reason
    assert main(["data", "check", "--fix", str(tub)]) == 1
    assert "NOT fixed: empty tub" in capsys.readouterr().out


def test_several_faults_one_report(make_tub, donkey_read, capsys):
    tub = make_tub()
    expected = {inject(tub)[0] for inject in (_fault_nan_angle, _fault_missing_image, _fault_corrupt_jpeg)}
    not_a_tub = tub.parent / "not_a_tub"
    not_a_tub.mkdir()
    assert main(["data", "check", str(tub), str(not_a_tub)]) == 1
    out = capsys.readouterr().out
    assert "no manifest.json" in out and "0/2 tubs OK" in out
    assert {p.index for p in check_tub(tub).problems} == expected
    assert main(["data", "check", "--fix", str(tub)]) == 0
    assert len(donkey_read(tub)) == N - len(expected)


def test_a_shape_no_record_has_deletes_nothing_unless_forced(make_tub, donkey_read, capsys):
    tub = make_tub()
    manifest = (tub / "manifest.json").read_bytes()
    report = check_tub(tub, shape=(60, 80, 3))
    assert [(p.index, p.fix) for p in report.problems] == [(None, "manual")]
    assert "nothing deleted" in report.problems[0].reason and not report.delete
    assert main(["data", "check", "--fix", "--shape", "60,80,3", str(tub)]) == 1
    assert (tub / "manifest.json").read_bytes() == manifest
    assert main(["data", "check", "--shape", "120x160x3", str(tub)]) == 0

    assert main(["data", "check", "--fix", "--force", "--shape", "60,80,3", str(tub)]) == 1
    assert "marked 20 records deleted" in capsys.readouterr().out
    assert main(["data", "check", "--undo", str(tub)]) == 0
    assert (tub / "manifest.json").read_bytes() == manifest and len(donkey_read(tub)) == N
    with pytest.raises(SystemExit):
        main(["data", "check", "--shape", "big", str(tub)])


@pytest.mark.parametrize("metadata", [None, ["image_h:120", "image_w:160", "image_depth:3"]])
def test_a_tub_of_mostly_gray_frames_keeps_its_good_ones(make_tub, metadata, capsys):
    from PIL import Image

    tub = make_tub(metadata=metadata)
    gray = list(range(15))  # most frames are the wrong shape: a majority vote would keep these
    for i in gray:
        Image.new("L", (160, 120)).save(tub / "images" / f"{i}_cam_image_array_.jpg")
    report = check_tub(tub)
    assert report.delete == set(gray)
    source = "the tub's metadata" if metadata else "the twin camera's default"
    assert source in report.shape_source
    assert main(["data", "check", "--fix", str(tub)]) == 0
    fixed = check_tub(tub)
    assert fixed.raw is not None and fixed.records - len(fixed.raw.deleted_indexes) == N - len(gray)


def test_the_tubs_own_shape_wins_over_the_camera_default(make_tub):
    tub = make_tub(metadata=["image_h:60", "image_w:80", "image_depth:3"])
    report = check_tub(tub)
    assert [p.fix for p in report.problems] == ["manual"] and "(60, 80, 3)" in report.problems[0].reason
    assert report.shape_source == "the tub's metadata"


def test_undo_without_a_fix_is_a_one_line_error(make_tub, capsys):
    tub = make_tub()
    assert main(["data", "check", "--undo", str(tub)]) == 2
    assert "nothing to undo" in capsys.readouterr().err
    assert main(["data", "check", "--undo", "--fix", str(tub)]) == 2
    assert main(["data", "check", "--force", str(tub)]) == 2


def _manifest_lines(tub: Path) -> list:
    return [json.loads(line) for line in (tub / "manifest.json").read_text().splitlines()]


def test_inconsistent_sessions_and_deleted_indexes_are_repaired(make_tub, donkey_read):
    tub = make_tub()
    lines = _manifest_lines(tub)
    lines[3]["sessions"]["all_full_ids"] = ["00-01-01_0"]  # the writer never saved the real session
    lines[3]["sessions"]["last_full_id"] = "00-01-01_0"
    lines[4]["deleted_indexes"] = [3, 57]  # 57 does not exist
    (tub / "manifest.json").write_text("".join(json.dumps(v) + "\n" for v in lines))
    report = check_tub(tub)
    reasons = [p.reason for p in report.problems]
    assert any("deleted_indexes name records that do not exist: [57]" in r for r in reasons), reasons
    assert any("are not listed in the manifest" in r for r in reasons), reasons
    fix_tub(report)
    fixed = _manifest_lines(tub)
    assert fixed[4]["deleted_indexes"] == [3] and fixed[4]["current_index"] == N
    assert len(fixed[3]["sessions"]["all_full_ids"]) == 2
    assert (tub / "manifest.json.orig").exists()
    assert len(donkey_read(tub)) == N - 1 and check_tub(tub).ok


def test_deleted_indexes_holding_a_list_is_reported_not_a_crash(make_tub):
    tub = make_tub()
    lines = _manifest_lines(tub)
    lines[4]["deleted_indexes"] = [[1, 2], 3]
    (tub / "manifest.json").write_text("".join(json.dumps(v) + "\n" for v in lines))
    reasons = [p.reason for p in check_tub(tub).problems]
    assert any("deleted_indexes name records that do not exist: [[1, 2]]" in r for r in reasons), reasons


@pytest.mark.parametrize(
    ("key", "value"), [("deleted_indexes", 7), ("current_index", "many"), ("paths", None)]
)
def test_catalog_metadata_of_the_wrong_type_is_reported_not_a_crash(make_tub, key, value):
    tub = make_tub()
    lines = _manifest_lines(tub)
    lines[4][key] = value
    (tub / "manifest.json").write_text("".join(json.dumps(v) + "\n" for v in lines))
    reasons = [p.reason for p in check_tub(tub).problems]
    assert any(f"wrong type for {key}" in r for r in reasons), reasons


def test_undecodable_line_would_crash_donkeycar_and_is_repaired(make_tub, donkey_read):
    tub = make_tub()
    data = (tub / "catalog_0.catalog").read_bytes().split(b"\n")
    data[6] = data[6][:30] + b"\xff\xfe" + data[6][32:]
    (tub / "catalog_0.catalog").write_bytes(b"\n".join(data))
    with pytest.raises(UnicodeDecodeError):
        donkey_read(tub)  # why the checker has its own reader
    report = check_tub(tub)
    assert [(p.index, "not UTF-8" in p.reason) for p in report.problems] == [(6, True)]
    fix_tub(report)
    assert [r["_index"] for r in donkey_read(tub)] == [i for i in range(N) if i != 6]
    assert check_tub(tub).ok, check_tub(tub).problems


def test_blank_line_is_reported_as_needing_a_person(make_tub):
    tub = make_tub()
    lines = _catalog_lines(tub)
    lines.insert(10, "")
    (tub / "catalog_0.catalog").write_text("\n".join(lines) + "\n")
    report = check_tub(tub)
    assert any("line 11 is blank" in p.reason and p.fix == "manual" for p in report.problems)
    assert not report.fixable


def test_unreadable_manifest_is_rebuilt_from_the_catalogs(make_tub, donkey_read):
    tub = make_tub()
    original = (tub / "manifest.json").read_bytes()
    (tub / "manifest.json").write_bytes(original[:70])  # cut inside the inputs line
    report = check_tub(tub)
    assert [p.index for p in report.problems] == [
        None
    ] and "manifest.json line 1 (inputs) is not JSON" in report.problems[0].reason
    fix_tub(report)
    assert (tub / "manifest.json.orig").read_bytes() == original[:70]
    rebuilt = _manifest_lines(tub)
    assert rebuilt[0] == list(INPUTS) and rebuilt[1] == list(TYPES) and rebuilt[4]["current_index"] == N
    assert len(donkey_read(tub)) == N and check_tub(tub).ok
