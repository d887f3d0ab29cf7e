"""One command line: shared option names, help everywhere, -v anywhere, one-line errors before TensorFlow."""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pitlane.cli import _parsers, build_parser, main


def _leaves():
    """Every parser that runs a command (a group's own help printer runs none; `gate` runs and has some)."""
    helps = "_print_help.<locals>.show"
    return [
        p for p in _parsers(build_parser()) if getattr(p.get_default("func"), "__qualname__", helps) != helps
    ]


def test_every_option_explains_itself_and_shows_its_default():
    for parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{parser.prog} {action.option_strings or action.dest} has no help"
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    text = commands.choices["data"].format_help()
    collect = [p for p in _parsers(build_parser()) if p.prog == "pitlane data collect"][0].format_help()
    assert text and "(default: light)" in collect


def test_one_name_per_idea():
    """An output folder is --out, a time limit --max-seconds, a model --model; the old names are hidden."""
    seen: dict[str, set[str]] = {}
    for parser in _leaves():
        for option in parser._option_string_actions:
            seen.setdefault(option, set()).add(parser.prog)
    for old in ("--report", "--duration", "--drive-seconds", "--stream-hz"):
        for parser in _leaves():
            assert old not in parser.format_help(), f"{parser.prog} still shows {old}"
    evaluate = next(p for p in _leaves() if p.prog == "pitlane evaluate")
    assert "--gate" not in evaluate.format_help()  # a policy is --policy (`model push --gate` is a report)
    assert {"pitlane evaluate", "pitlane gate", "pitlane car run", "pitlane train"} <= seen["--out"]
    assert {"pitlane evaluate", "pitlane gate", "pitlane car run", "pitlane model push"} <= seen["--model"]
    assert {"pitlane evaluate", "pitlane car run", "pitlane demo"} <= seen["--max-seconds"]
    assert {"pitlane evaluate", "pitlane gate"} <= seen["--policy"]


@pytest.mark.parametrize("group", ["car", "data", "twin", "deploy"])
def test_a_bare_group_prints_its_help(group, capsys):
    assert main([group]) == 2
    assert f"usage: pitlane {group}" in capsys.readouterr().out


def test_verbose_before_or_after_the_sub_command():
    parser = build_parser()
    assert parser.parse_args(["-v", "twin", "scenes"]).verbose is True
    assert parser.parse_args(["twin", "scenes", "-v"]).verbose is True
    assert parser.parse_args(["twin", "-v", "scenes"]).verbose is True
    assert parser.parse_args(["twin", "scenes"]).verbose is False


def test_old_spellings_still_work_with_a_warning(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3")
    assert main(["evaluate", str(model), "--report", str(afile)]) == 2
    err = capsys.readouterr().err
    assert "pitlane: warning: --report is deprecated; use --out" in err
    assert f"pitlane: error: --out {afile} is a file" in err


# Every mistake: exit 2, one line `pitlane: error: ...`, and no TensorFlow imported to find out.
MISTAKES = [
    (
        ["evaluate", "--model", "{keras_as_h5}", "--out", "{tmp}/r"],
        "is a Keras model (.keras zip) named .h5; rename it to .keras",
    ),
    (
        ["gate", "--model", "{h5_as_keras}", "--out", "{tmp}/r"],
        "is a Keras model (HDF5) named .keras; rename it to .h5",
    ),
    (["car", "run", "--model", "{tflite_as_keras}"], "is a TFLite model named .keras; rename it to .tflite"),
    (["evaluate", "{tmp}", "--out", "{tmp}/r"], "is a folder; give the model file"),
    (["gate", "--model", "{tmp}/missing.tflite", "--out", "{tmp}/r"], "does not exist"),
    (["evaluate", "--model", "{tflite}", "--out", "{afile}"], "--out {afile} is a file"),
    (["gate", "--model", "{tflite}", "--out", "{afile}/gate"], "is a file, so the folder cannot be created"),
    (["car", "run", "--model", "{tflite}", "--out", "{afile}"], "--out {afile} is a file"),
    (["data", "collect", "--scene", "mini_monaco", "--out", "{afile}"], "--out {afile} is a file"),
    (["data", "stats", "{tmp}", "--out", "{afile}/s.png"], "is a file, so the file cannot be created"),
    (["train", "--tub", "{tmp}", "--out", "{afile}/m.keras"], "is a file, so the file cannot be created"),
    (["evaluate", "--model", "{tflite}", "--out", "{tmp}/r", "--scene", "moon"], "unknown scene 'moon'"),
    (["gate", "--model", "{tflite}", "--out", "{tmp}/r", "--policy", "{tmp}/no.yaml"], "does not exist"),
    (["car", "run", "--max-seconds", "0"], "--max-seconds must be a positive number"),
    (["car", "run", "--web-port", "{busy_port}"], "the port is in use"),
    (["demo", "--out", "{afile}"], "--out {afile} is a file"),
]


def test_every_mistake_is_one_line_before_tensorflow(tmp_path):
    files = {
        "keras_as_h5": ("m.h5", b"PK\x03\x04rest"),
        "h5_as_keras": ("m.keras", b"\x89HDF\r\n\x1a\nrest"),
        "tflite_as_keras": ("t.keras", b"\x1c\x00\x00\x00TFL3rest"),
        "tflite": ("ok.tflite", b"\x1c\x00\x00\x00TFL3rest"),
        "afile": ("afile", b"x"),
    }
    values = {"tmp": str(tmp_path)}
    for key, (name, content) in files.items():
        (tmp_path / name).write_bytes(content)
        values[key] = str(tmp_path / name)
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        values["busy_port"] = str(busy.getsockname()[1])
        cases = [([a.format(**values) for a in argv], want.format(**values)) for argv, want in MISTAKES]
        script = (
            "import json, sys\n"
            "from pitlane.cli import main\n"
            "codes = [main(argv) for argv in json.loads(sys.argv[1])]\n"
            "print(json.dumps({'codes': codes, 'tf': 'tensorflow' in sys.modules, 'dk': 'donkeycar' in sys.modules}))\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script, json.dumps([argv for argv, _ in cases])],
            capture_output=True,
            text=True,
            timeout=120,
        )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert result["codes"] == [2] * len(cases), proc.stderr
    assert not result["tf"] and not result["dk"], "TensorFlow or donkeycar was imported to check arguments"
    assert len(errors) == len(cases), proc.stderr  # one line each, no traceback
    for (argv, want), line in zip(cases, errors, strict=True):
        assert line.startswith("pitlane: error: ") and want in line, (argv, line)


def test_the_sim_image_command_has_the_domains_it_ships(tmp_path):
    """Dockerfile.sim copies only some domains (no train, release, ...): `pitlane` there lists the commands
    of what it ships and serves the twin; the domains it leaves out are left out of the command."""
    root = Path(__file__).resolve().parents[1]
    for line in (root / "Dockerfile.sim").read_text().splitlines():
        if line.startswith("COPY pitlane"):
            for pattern in line.split()[1:-1]:
                for src in root.glob(pattern):
                    dest = tmp_path / src.relative_to(root)
                    if src.is_dir():
                        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
                    else:
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy(src, dest)
    assert (tmp_path / "pitlane" / "twin" / "session.py").is_file() and not (
        tmp_path / "pitlane" / "train"
    ).exists()
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    # as in the image: only these files (an editable install of the checkout would find the rest)
    child = (
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if not str(getattr(f, '__module__', '')).startswith('__editable__')]\n"
        "from pitlane.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )

    def pitlane(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", child, *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = pitlane("--help")
    assert listed.returncode == 0, listed.stderr
    commands = listed.stdout.split("COMMAND", 2)[-1]
    for shipped in ("twin", "data", "evaluate", "gate", "model", "car"):
        assert f"\n    {shipped} " in commands, listed.stdout
    for left_out in ("train", "release", "demo", "images", "deploy"):
        assert f"\n    {left_out} " not in commands, listed.stdout
    assert pitlane("twin", "serve", "--help").returncode == 0
