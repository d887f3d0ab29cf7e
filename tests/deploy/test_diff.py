"""A model-only release and a code release walked through pin -> commit/tag -> render -> diff, in real git."""

from __future__ import annotations

import subprocess

import pytest

from pitlane.cli import main
from pitlane.deploy.diff import diff_releases
from pitlane.errors import UserError

REG = "127.0.0.1:5000/pitlane"
SIM1, SIM2 = f"{REG}/sim@sha256:" + "1" * 64, f"{REG}/sim@sha256:" + "2" * 64
CAR1, CAR2 = f"{REG}/car@sha256:" + "3" * 64, f"{REG}/car@sha256:" + "4" * 64
MODEL1, MODEL2 = f"{REG}/models@sha256:" + "5" * 64, f"{REG}/models@sha256:" + "6" * 64


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def release(repo, tag, *pin_args):
    assert main(["deploy", "pin", "--root", str(repo), *pin_args]) == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"release {tag}")
    git(repo, "tag", tag)


@pytest.mark.slow
def test_model_only_release_changes_only_the_model_reference_and_code_release_only_images(argocd, capsys):
    repo = argocd.parent
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "release@pitlane.invalid")
    git(repo, "config", "user.name", "release")
    release(repo, "v0.1.0", "--image", f"sim={SIM1}", "--image", f"car={CAR1}", "--model", MODEL1)
    release(repo, "v0.2.0", "--model", MODEL2)  # model-only
    release(repo, "v0.3.0", "--image", f"sim={SIM2}", "--image", f"car={CAR2}")  # code only

    model_only = diff_releases("v0.1.0", "v0.2.0", repo)
    assert {(c.render, c.obj) for c in model_only} == {
        ("target car-1", "ConfigMap pitlane/pitlane-model"),
        ("target nuc", "ConfigMap pitlane/pitlane-model"),
    }
    for c in model_only:
        assert c.removed == (f"  model-ref: {MODEL1}",) and c.added == (f"  model-ref: {MODEL2}",)

    code = diff_releases("v0.2.0", "v0.3.0", repo)
    assert {(c.render, c.obj) for c in code} == {
        ("target car-1", "Deployment pitlane/pitlane-car"),
        ("target nuc", "Deployment pitlane/pitlane-car"),
        ("target nuc", "Deployment pitlane/pitlane-twin"),
        ("target nuc", "Deployment pitlane/pitlane-mosquitto"),  # the fleet runs the sim image too
        ("target nuc", "Deployment pitlane/pitlane-fleet"),
    }
    expected_image = {"target car-1": CAR2, "target nuc": SIM2}
    for c in code:
        assert len(c.removed) == len(c.added) == 1
        assert c.added[0].strip() == f"image: {expected_image[c.render]}"

    # the CLI: a folder (the working tree) against a tag; then the printed model-only diff
    capsys.readouterr()
    assert main(["deploy", "diff", "v0.3.0", str(repo), "--root", str(repo)]) == 0
    assert capsys.readouterr().out.strip() == "0 object(s) changed in 0 render(s), 0 line(s)"
    assert main(["deploy", "diff", "v0.1.0", "v0.2.0", "--root", str(repo)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        "target car-1: ConfigMap pitlane/pitlane-model",
        f"  -   model-ref: {MODEL1}",
        f"  +   model-ref: {MODEL2}",
    ]
    assert out[-1] == "2 object(s) changed in 2 render(s), 4 line(s)"

    with pytest.raises(UserError, match="v9.9.9: neither a folder nor a git ref"):
        diff_releases("v9.9.9", "v0.1.0", repo)
