"""The README's data-scientist guide works as written: its commands, parsed from README.md, run on small
settings and the model they make passes the example gate policy the README documents.

The commands are read from the README's code blocks, so a guide that drifts from the CLI breaks this test.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from pitlane.cli import main
from pitlane.evaluate.gate import load_policy

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EXAMPLE_POLICY = "examples/gate_policy.yaml"
PREFIX = ".venv/bin/pitlane"


def readme_commands() -> list[list[str]]:
    """Every `.venv/bin/pitlane ...` line of the README's bash blocks, as argv lists without the prefix."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith(PREFIX + " "):
                commands.append(shlex.split(line, comments=True)[1:])
    return commands


def find(commands: list[list[str]], *words: str) -> list[str]:
    found = [c for c in commands if c[: len(words)] == list(words) or all(w in c for w in words)]
    assert found, f"the README shows no `pitlane {' '.join(words)}` command"
    return list(found[0])


def with_value(argv: list[str], flag: str, value: str) -> list[str]:
    """argv with flag's value replaced; the README must show the flag (so its drift fails here)."""
    assert flag in argv, f"the README's `pitlane {' '.join(argv[:2])}` no longer shows {flag}"
    i = argv.index(flag)
    return argv[: i + 1] + [value] + argv[i + 2 :]


def test_readme_shows_commands_not_environment_assumptions():
    text = README.read_text()
    assert "pipenv run" not in text and "\npython manage.py" not in text
    assert load_policy(ROOT / EXAMPLE_POLICY).scenes  # the example policy the README points to loads
    commands = readme_commands()
    assert len(commands) > 15
    for argv in commands:  # every command line parses: its sub-command and option names exist
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0, argv


@pytest.mark.slow
def test_the_data_scientist_guide_yields_a_model_that_passes_its_gate(tmp_path, monkeypatch, capsys):
    commands = readme_commands()
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    policy = load_policy(EXAMPLE_POLICY)
    assert len(policy.scenes) == 1 and policy.laps == 1  # the small policy the README documents

    collect = find(commands, "data", "collect")
    assert "--noise" in collect and collect[collect.index("--noise") + 1] == "heavy"
    scenes = [collect[i + 1] for i, a in enumerate(collect) if a == "--scene"]
    assert policy.scenes[0] in scenes
    small = [a for i, a in enumerate(collect) if a != "--scene" and (i == 0 or collect[i - 1] != "--scene")]
    small = [*small, "--scene", policy.scenes[0], "--seed", "1"]  # one scene of the guide's, 3 laps
    assert main(small) == 0
    tub = small[small.index("--out") + 1]

    check = next(c for c in commands if c[:2] == ["data", "check"] and "--fix" not in c)
    assert main(check) == 0
    stats = find(commands, "data", "stats")
    assert main(stats) == 0 and Path(stats[stats.index("--out") + 1]).is_file()

    train = with_value(find(commands, "train"), "--epochs", "6")
    assert train[train.index("--tub") + 1] == tub
    assert main([*train, "--batch-size", "16", "--seed", "1", "--threads", "2"]) == 0
    model = train[train.index("--out") + 1]

    evaluate = with_value(find(commands, "evaluate"), "--laps", "1")
    assert evaluate[evaluate.index("--model") + 1] == str(Path(model).with_suffix(".tflite"))
    assert main([*evaluate, "--max-seconds", "5"]) == 0

    gate = find(commands, "gate", "--policy")
    assert gate[gate.index("--policy") + 1] == EXAMPLE_POLICY
    capsys.readouterr()
    code = main(gate)
    table = capsys.readouterr().out
    assert code == 0, table
    result = json.loads((Path(gate[gate.index("--out") + 1]) / "gate.json").read_text())
    assert result["verdict"] == "pass" and "GATE PASS" in table
    assert [r["laps_completed"] for r in result["reports"].values()] == [policy.laps]
