"""`pitlane data push | pull | ls` through the real registry, as the lead wires them into `pitlane data`."""

from __future__ import annotations

import argparse
import json
import os

import pytest

from pitlane.errors import UserError
from pitlane.fleet.data_cli import add_data_commands, parse_since


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pitlane data")
    add_data_commands(parser.add_subparsers(dest="action", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_push_pull_and_ls(registry, make_tub, tmp_path, capsys):
    tub = make_tub("session-1", 12)
    capsys.readouterr()  # donkeycar's import banner
    repo = f"data/cli-{os.getpid()}"
    assert run(["push", str(tub), "--to", f"{registry.host}/{repo}"]) == 0
    ref = capsys.readouterr().out.strip()
    assert ref.startswith(f"{registry.host}/{repo}@sha256:")
    assert run(["push", str(tub), "--to", f"{registry.host}/{repo}"]) == 0  # again: the same bundle
    assert capsys.readouterr().out.strip() == ref
    assert run(["pull", ref, "--out", str(tmp_path / "pulled")]) == 0
    assert "12 records" in capsys.readouterr().out
    assert json.loads((tmp_path / "pulled" / ".pitlane-bundle.json").read_text())["ref"] == ref
    assert run(["ls", "--registry", registry.host, "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    mine = [b for b in listed if b["ref"] == ref]
    assert len(mine) == 1 and mine[0]["records"] == 12 and mine[0]["user"] and mine[0]["car"] is None
    assert run(["ls", "--registry", registry.host]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["REF", "CAR/USER", "SESSION"] and any(ref in row for row in table)
    assert run(["ls", "--registry", registry.host, "--since", "2999-01-01"]) == 0
    assert ref not in capsys.readouterr().out


def test_bad_input_is_one_clear_line(registry, make_tub):
    with pytest.raises(UserError, match="REGISTRY/REPO \\(no tag or digest\\)"):
        run(["push", str(make_tub("t", 2)), "--to", f"{registry.host}/data/x:v1"])
    with pytest.raises(UserError, match="under data/"):
        run(["push", str(make_tub("u", 2)), "--to", f"{registry.host}/models/x"])
    with pytest.raises(UserError, match="--since wants a date"):
        parse_since("yesterday")
    with pytest.raises(UserError, match="not a sha256 digest"):
        run(["ls", "--registry", registry.host, "--model", "abc"])
    assert parse_since("1970-01-02") == 86400.0
