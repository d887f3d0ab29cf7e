"""`pitlane model ...` and `pitlane keys generate` end to end against the real registry."""

from __future__ import annotations

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
    code, out, _ = run(capsys, "model", "sign", ref, "--key", str(key))
    assert code == 0 and REF.findall(out)[-1] == ref
    code, out, _ = run(capsys, "model", "verify", ref, "--key", str(pub))
    assert code == 0 and "gate attestation verdict pass" in out
    code, out, _ = run(capsys, "model", "ls", repo)
    assert code == 0 and "v1" in out and "yes" in out
    code, out, _ = run(capsys, "model", "pull", ref, "--out", str(tmp_path / "pulled"))
    assert code == 0 and (tmp_path / "pulled" / "pilot.tflite").read_bytes() == models["a"].read_bytes()


@pytest.mark.parametrize(
    ("gate", "why"),
    [
        (None, "carries no gate report"),
        ("fail", "verdict is 'fail'"),
        ("other", "the gate report is for model sha256:"),
    ],
)
def test_sign_refuses_an_ungated_bundle(registry, models, keypair, tmp_path, capsys, gate, why):
    key, _ = keypair
    argv = ["model", "push", str(models["b"]), "--to", f"{registry.host}/cli/ungated"]
    if gate == "fail":
        argv += ["--gate", str(write_gate_report(models["b"], tmp_path / "g.json", verdict="fail"))]
    elif gate == "other":
        argv += ["--gate", str(write_gate_report(models["a"], tmp_path / "g.json"))]
    code, out, err = run(capsys, *argv)
    assert code == 0
    code, out, err = run(capsys, "model", "sign", REF.findall(out)[-1], "--key", str(key))
    assert code == 2 and err.startswith("pitlane: error: ") and why in err


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
