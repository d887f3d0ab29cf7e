"""`pitlane demo`'s arguments: every mistake is one line before anything runs (the demo itself is
tests/orchestration/test_demo.py, slow)."""

from __future__ import annotations

import pytest

from pitlane.cli import build_parser, main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-seconds", "0"], "--max-seconds must be a positive number of seconds, got 0.0"),
        (["--max-seconds", "nan"], "--max-seconds must be a positive number of seconds"),
        (["--scene", "moon"], "unknown scene 'moon'"),
    ],
)
def test_a_mistake_is_one_line_and_nothing_runs(tmp_path, capsys, argv, message):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pitlane: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_the_defaults_are_the_demos():
    args = build_parser().parse_args(["demo"])
    assert (str(args.out), args.max_seconds, args.scene, args.seed) == (
        "out/demo",
        60.0,
        "generated_track",
        0,
    )
