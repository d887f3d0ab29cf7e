"""Hostile tubs: check, --fix, --undo, stats and collect never write outside the tub, and never traceback.

Each tub below is built the way an attacker (or a broken copy) would: symlinks from the tub's files to the
user's files, catalog paths that climb out, planted backup names, forged fix journals, FIFOs, hard links,
huge and deeply nested lines, values of the wrong type. Every command runs on every tub; the user's files
next to it (a sentinel tree, hashed) must be byte for byte what they were, with nothing added.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pitlane.cli import main
from pitlane.data import tubfiles
from pitlane.data.check import JOURNAL, check_tub
from tests.data.conftest import write_tub

SENTINEL_MANIFEST = (
    '["a"]\n["str"]\n{}\n{}\n{"paths": [], "current_index": 0, "max_len": 1, "deleted_indexes": []}\n'
)


def _home(root: Path) -> Path:
    """The user's files the tub must never touch: a secret, a folder of images, a foreign catalog."""
    home = root / "home"
    (home / "pics").mkdir(parents=True)
    (home / "secret.txt").write_text("the user's own words\n")
    (home / "pics" / "0_cam_image_array_.jpg").write_bytes(b"not the tub's")
    (home / "x.catalog").write_text('{"_index": 0}')  # no newline: a fix would "repair" it
    (home / "x.catalog_manifest").write_text("not json\n")
    (home / "manifest.json").write_text(SENTINEL_MANIFEST)
    return home


def _digest(root: Path, skip: Path) -> dict[str, str]:
    """Every path under root (but the tub) with its content hash, or where its symlink points."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            continue
        for name in dirnames + filenames:
            p = here / name
            if p == skip:
                continue
            if p.is_symlink():
                out[str(p)] = "-> " + os.readlink(p)
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[str(p)] = "dir"
    return out


def _manifest(tub: Path) -> list:
    return [json.loads(x) for x in (tub / "manifest.json").read_text().splitlines()]


def _write_manifest(tub: Path, lines: list) -> None:
    (tub / "manifest.json").write_text("".join(json.dumps(v) + "\n" for v in lines))


def _symlink_manifest(tub: Path, home: Path) -> None:
    (home / "manifest.json").write_text((tub / "manifest.json").read_text().replace("20", "5"))
    (tub / "manifest.json").unlink()
    (tub / "manifest.json").symlink_to(home / "manifest.json")


def _symlink_catalog(tub: Path, home: Path) -> None:
    (tub / "catalog_0.catalog").unlink()
    (tub / "catalog_0.catalog").symlink_to(home / "x.catalog")


def _symlink_catalog_manifest(tub: Path, home: Path) -> None:
    (tub / "catalog_0.catalog_manifest").unlink()
    (tub / "catalog_0.catalog_manifest").symlink_to(home / "x.catalog_manifest")


def _symlink_images(tub: Path, home: Path) -> None:
    (tub / "images" / "1_cam_image_array_.jpg").unlink()
    (tub / "images" / "1_cam_image_array_.jpg").symlink_to(home / "secret.txt")


def _symlink_images_folder(tub: Path, home: Path) -> None:
    import shutil

    shutil.rmtree(tub / "images")
    (tub / "images").symlink_to(home / "pics")


def _dotdot_catalog(tub: Path, home: Path) -> None:
    lines = _manifest(tub)
    lines[4]["paths"] = ["../home/x.catalog"]
    _write_manifest(tub, lines)


def _absolute_catalog(tub: Path, home: Path) -> None:
    lines = _manifest(tub)
    lines[4]["paths"] = [str(home / "x.catalog")]
    _write_manifest(tub, lines)


def _dotdot_image_name(tub: Path, home: Path) -> None:
    lines = (tub / "catalog_0.catalog").read_text().splitlines()
    record = json.loads(lines[2])
    record["cam/image_array"] = "../../home/pics/0_cam_image_array_.jpg"
    lines[2] = json.dumps(record)
    (tub / "catalog_0.catalog").write_text("\n".join(lines) + "\n")


def _planted_dangling_backup(tub: Path, home: Path) -> None:
    _dotdot_catalog(tub, home)  # something for --fix to rewrite (the manifest)
    (tub / "manifest.json.orig").symlink_to(home / "planted.txt")  # does not exist yet


def _planted_backup_over_secret(tub: Path, home: Path) -> None:
    (tub / "catalog_0.catalog").write_bytes((tub / "catalog_0.catalog").read_bytes()[:-30])
    (tub / "catalog_0.catalog.orig").symlink_to(home / "secret.txt")
    (tub / "manifest.json.orig").symlink_to(home / "secret.txt")


def _journal_symlink(tub: Path, home: Path) -> None:
    _dotdot_catalog(tub, home)
    (tub / JOURNAL).symlink_to(home / "secret.txt")


def _forged_journal(tub: Path, home: Path) -> None:
    (tub / JOURNAL).write_text(json.dumps([{"file": "../home/secret.txt", "backup": "manifest.json"}]))


def _forged_journal_backup(tub: Path, home: Path) -> None:
    (tub / JOURNAL).write_text(json.dumps([{"file": "manifest.json", "backup": "../home/secret.txt"}]))


def _hard_linked_manifest(tub: Path, home: Path) -> None:
    lines = _manifest(tub)
    lines[4]["current_index"] = 3  # stale: --fix rewrites the manifest
    _write_manifest(tub, lines)
    os.link(tub / "manifest.json", home / "linked_manifest.json")


def _fifo_image(tub: Path, home: Path) -> None:
    (tub / "images" / "4_cam_image_array_.jpg").unlink()
    os.mkfifo(tub / "images" / "4_cam_image_array_.jpg")


def _catalog_is_a_folder(tub: Path, home: Path) -> None:
    (tub / "catalog_0.catalog").unlink()
    (tub / "catalog_0.catalog").mkdir()


def _unlisted_symlinked_catalog(tub: Path, home: Path) -> None:
    (tub / "catalog_1.catalog").symlink_to(home / "x.catalog")
    (tub / "manifest.json").write_text("garbage\n")  # a rebuild would read the catalogs on disk


def _deep_nesting(tub: Path, home: Path) -> None:
    with open(tub / "catalog_0.catalog", "a") as f:
        f.write("[" * 100_000 + "]" * 100_000 + "\n")
    lines = (tub / "manifest.json").read_text().splitlines()
    lines[2] = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (tub / "manifest.json").write_text("\n".join(lines) + "\n")


def _huge_line(tub: Path, home: Path) -> None:
    with open(tub / "catalog_0.catalog", "a") as f:
        f.write('{"user/angle": "' + "x" * 20_000_000 + '"}\n')


def _huge_number(tub: Path, home: Path) -> None:
    lines = (tub / "catalog_0.catalog").read_text().splitlines()
    lines[1] = lines[1].replace('"user/angle": ', '"user/angle": 1' + "0" * 400 + ', "x": ')
    lines[2] = lines[2].replace('"user/angle": ', '"user/angle": 1' + "0" * 5000 + ', "x": ')
    (tub / "catalog_0.catalog").write_text("\n".join(lines) + "\n")


def _wrong_types(tub: Path, home: Path) -> None:
    lines = _manifest(tub)
    lines[0] = {"cam/image_array": 1}
    _write_manifest(tub, lines)


def _wrong_types_in_types(tub: Path, home: Path) -> None:
    lines = _manifest(tub)
    lines[1] = [{"a": 1}, ["b"], 3, None, "float", "float", "float", "float", "float"]
    _write_manifest(tub, lines)


def _wrong_sessions(tub: Path, home: Path) -> None:
    lines = _manifest(tub)
    lines[3]["sessions"] = ["not", "a", "dict"]
    lines[4]["deleted_indexes"] = ["1", None, [2], {"a": 1}, 10**30]
    _write_manifest(tub, lines)


def _wrong_record_values(tub: Path, home: Path) -> None:
    lines = (tub / "catalog_0.catalog").read_text().splitlines()
    for i, value in enumerate([[1, 2], {"a": "b"}, None, 7, "x" * 5000, True]):
        record = json.loads(lines[i])
        record.update({"cam/image_array": value, "_timestamp_ms": value, "user/throttle": value})
        lines[i] = json.dumps(record)
    lines[7] = "[1, 2, 3]"
    lines[8] = '"just a string"'
    lines[9] = "\udcff".encode("utf-8", "surrogateescape").decode("latin-1")
    (tub / "catalog_0.catalog").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _catalog_manifest_wrong_types(tub: Path, home: Path) -> None:
    (tub / "catalog_0.catalog_manifest").write_text(
        json.dumps({"line_lengths": "many", "start_index": [0], "created_at": "now"}) + "\n"
    )


HOSTILE: list[Callable[[Path, Path], None]] = [
    _symlink_manifest,
    _symlink_catalog,
    _symlink_catalog_manifest,
    _symlink_images,
    _symlink_images_folder,
    _dotdot_catalog,
    _absolute_catalog,
    _dotdot_image_name,
    _planted_dangling_backup,
    _planted_backup_over_secret,
    _journal_symlink,
    _forged_journal,
    _forged_journal_backup,
    _hard_linked_manifest,
    _fifo_image,
    _catalog_is_a_folder,
    _unlisted_symlinked_catalog,
    _deep_nesting,
    _huge_line,
    _huge_number,
    _wrong_types,
    _wrong_types_in_types,
    _wrong_sessions,
    _wrong_record_values,
    _catalog_manifest_wrong_types,
]


@pytest.mark.parametrize("make_hostile", HOSTILE, ids=lambda f: f.__name__.strip("_"))
def test_no_command_writes_outside_a_hostile_tub(make_hostile, tmp_path, capsys):
    home = _home(tmp_path)
    tub = write_tub(tmp_path / "tub", n=20)
    make_hostile(tub, home)
    before = _digest(tmp_path, skip=tub)
    commands = [
        ["data", "check", str(tub)],
        ["data", "check", "--fix", str(tub)],
        ["data", "check", "--fix", "--force", "--shape", "60,80,3", str(tub)],
        ["data", "check", "--undo", str(tub)],
        ["data", "stats", str(tub)],
        ["data", "collect", "--scene", "generated_road", "--laps", "1", "--out", str(tub)],
    ]
    for argv in commands:
        code = main(argv)  # an exception here (a traceback for the user) fails the test
        assert code in (0, 1, 2), argv
        err = capsys.readouterr().err
        assert "Traceback" not in err
    assert _digest(tmp_path, skip=tub) == before, "a file outside the tub was written, added or removed"


def test_symlinked_files_are_named_and_left_alone(tmp_path):
    home = _home(tmp_path)
    tub = write_tub(tmp_path / "tub", n=5)
    _symlink_catalog(tub, home)
    report = check_tub(tub)
    assert any("catalog_0.catalog is a symlink" in p.reason and p.fix == "manual" for p in report.problems)
    assert not report.fixable


def test_a_catalog_path_leaving_the_tub_is_a_clear_problem_not_a_traceback(tmp_path, capsys):
    tub = write_tub(tmp_path / "tub", n=5)
    lines = _manifest(tub)
    lines[4]["paths"] = ["../../x.catalog"]
    _write_manifest(tub, lines)
    assert main(["data", "check", str(tub)]) == 1
    assert "lists catalog '../../x.catalog', which is not a catalog_N.catalog file" in capsys.readouterr().out
    assert main(["data", "check", "--fix", str(tub)]) == 0  # rebuilt from the catalog on disk
    assert _manifest(tub)[4]["paths"] == ["catalog_0.catalog"]


def test_confined_refuses_every_way_out(tmp_path):
    tub = write_tub(tmp_path / "tub", n=1)
    (tub / "link").symlink_to(tmp_path)
    for name in [
        "../x",
        "/etc/passwd",
        "images/../../x",
        "a/b/c",
        "",
        ".",
        "link",
        "link/x",
        "a\\b",
        "x\x00",
    ]:
        with pytest.raises(tubfiles.UnsafePath):
            tubfiles.read_bytes(tub, name)
    assert tubfiles.read_bytes(tub, "manifest.json").startswith(b"[")


def test_a_folder_of_tubs_does_not_lead_through_a_symlink_to_the_users_tubs(tmp_path, capsys):
    mine = write_tub(tmp_path / "mine", n=5)
    lines = _manifest(mine)
    lines[4]["current_index"] = 2  # something --fix would change
    _write_manifest(mine, lines)
    before = (mine / "manifest.json").read_bytes()
    downloads = tmp_path / "downloads"
    write_tub(downloads / "theirs", n=5)
    (downloads / "link").symlink_to(mine)
    assert main(["data", "check", "--fix", str(downloads)]) == 0
    assert "1/1 tubs OK" in capsys.readouterr().out
    assert (mine / "manifest.json").read_bytes() == before
