"""`pitlane model ...` and `pitlane keys generate` end to end against the real registry."""

from __future__ import annotations

import contextlib
import re

import pytest
from model_support import write_gate_report

from pitlane.artifacts import signing
from pitlane.cli import main

pytestmark = pytest.mark.slow  # builds small TFLite models with TensorFlow (a minute on 2 cores)

REF = re.compile(r"^(\S+@sha256:[0-9a-f]{64})$", re.M)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def keypair(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(signing.PASSWORD_ENV, "s3cret")
    code, out, _ = run(capsys, "keys", "generate", "--prefix", str(tmp_path / "release"))
    assert code == 0 and "release.pub" in out
    return tmp_path / "release.key", tmp_path / "release.pub"


def test_push_inspect_ls_sign_verify(registry, models, keypair, tmp_path, capsys):
    key, pub = keypair
    repo = f"{registry.host}/cli/pilot"
    gate = write_gate_report(models["a"], tmp_path / "gate.json")
    code, out, _ = run(capsys, "model", "push", str(models["a"]), "--to", repo + ":v1", "--gate", str(gate))
    assert code == 0
    ref = REF.findall(out)[-1]
    assert ref.startswith(repo + "@sha256:")
    code, out, _ = run(capsys, "model", "inspect", ref)
    assert code == 0 and "serial        1" in out and "gate          pass" in out
    code, out, err = run(capsys, "model", "verify", ref, "--key", str(pub))
    assert code == 2 and "is not signed" in err
    code, out, _ = run(capsys, "model", "sign", ref, "--key", str(key), "--gate", str(gate))
    assert code == 0 and REF.findall(out)[-1] == ref and "release serial 1" in out
    code, out, _ = run(capsys, "model", "verify", ref, "--key", str(pub))
    assert code == 0 and "gate attestation verdict pass" in out
    code, out, _ = run(capsys, "model", "ls", repo)
    assert code == 0 and "v1" in out and "yes" in out
    code, out, _ = run(capsys, "model", "pull", ref, "--out", str(tmp_path / "pulled"))
    assert code == 0 and (tmp_path / "pulled" / "pilot.tflite").read_bytes() == models["a"].read_bytes()


@pytest.mark.parametrize(
    ("trusted", "why"),
    [
        ("fail", "verdict is 'fail'"),
        ("other", "the gate report is for model sha256:"),
        (None, "the following arguments are required: --gate"),
    ],
)
def test_sign_attests_only_a_passing_report_of_the_signers_gate_run(
    registry, models, keypair, tmp_path, capsys, trusted, why
):
    """The bundle carries a hand-written passing gate.json (a forged report): `model sign` never reads it.
    It signs only with a gate report it is given, which must pass for exactly this .tflite."""
    key, _ = keypair
    forged = write_gate_report(models["b"], tmp_path / "forged.json", verdict="pass")
    argv = ["model", "push", str(models["b"]), "--to", f"{registry.host}/cli/forged", "--gate", str(forged)]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    sign = ["model", "sign", REF.findall(out)[-1], "--key", str(key)]
    if trusted == "fail":
        sign += ["--gate", str(write_gate_report(models["b"], tmp_path / "g.json", verdict="fail"))]
    elif trusted == "other":
        sign += ["--gate", str(write_gate_report(models["a"], tmp_path / "g.json"))]
    with pytest.raises(SystemExit) if trusted is None else contextlib.nullcontext():
        code, out, err = run(capsys, *sign)
        assert code == 2 and err.startswith("pitlane: error: ") and why in err
    if trusted is None:
        assert why in capsys.readouterr().err


def test_bad_input_is_one_line(registry, models, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(signing.PASSWORD_ENV, raising=False)
    cases = [
        (["keys", "generate", "--prefix", str(tmp_path / "k")], "PITLANE_KEY_PASSWORD"),
        (["model", "push", str(models["a"]), "--to", "models/pilot"], "names no registry"),
        (["model", "push", str(tmp_path / "none.tflite"), "--to", f"{registry.host}/x"], "does not exist"),
        (["model", "inspect", f"{registry.host}/cli/none:v9"], "not found"),
        (["model", "ls", "127.0.0.1:1/x"], "unreachable"),
    ]
    for argv, why in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2 and why in err and err.count("\n") == 1, (argv, err)
