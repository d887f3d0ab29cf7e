"""`pitlane deploy check`: the repository's manifests pass; a broken one is named; --released wants real pins."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pitlane.cli import main
from pitlane.deploy.check import check

from .conftest import ARGOCD

SIM = "127.0.0.1:5000/pitlane/sim@sha256:" + "a" * 64
CAR = "127.0.0.1:5000/pitlane/car@sha256:" + "b" * 64
MODEL = "127.0.0.1:5000/pitlane/models@sha256:" + "c" * 64
NOTEBOOK = "127.0.0.1:5000/pitlane/notebook@sha256:" + "d" * 64  # the RayCluster's (and the hub's)


@pytest.mark.slow
def test_repository_manifests_pass_and_placeholders_are_not_a_release(capsys):
    assert main(["deploy", "check", "--root", str(ARGOCD.parent)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("ok: 0 problem(s)")
    assert main(["deploy", "check", "--released", "--root", str(ARGOCD.parent)]) == 1
    out = capsys.readouterr().out
    assert "not released: image car: registry.invalid/pitlane/car@sha256:" in out
    assert "not released: model: registry.invalid/" in out


@pytest.mark.slow
def test_image_by_tag_in_an_overlay_is_named(argocd):
    twin = argocd / "overlays" / "nuc-sim" / "twin-deployment.yaml"
    twin.write_text(twin.read_text().replace("image: pitlane-sim", "image: quay.io/someone/twin:latest"))
    problems = check(argocd)
    expected = (
        "overlay nuc-sim: Deployment pitlane/pitlane-twin: spec.template.spec.containers[twin].image: "
        "'quay.io/someone/twin:latest' is not pinned by digest"
    )
    assert any(p.startswith(expected) for p in problems), problems
    assert any(p.startswith("target nuc: Deployment pitlane/pitlane-twin") for p in problems)


@pytest.mark.slow
def test_kind_outside_the_appproject_and_a_foreign_repo_are_named(argocd):
    extra = argocd / "base" / "secret.yaml"
    extra.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: pitlane\n")
    kust = argocd / "base" / "kustomization.yaml"
    kust.write_text(kust.read_text().replace("  - namespace.yaml\n", "  - namespace.yaml\n  - secret.yaml\n"))
    appset = argocd / "bootstrap" / "applicationset.yaml"
    appset.write_text(
        appset.read_text().replace(
            "repoURL: https://github.com/pitlane-dev/pitlane.git",
            "repoURL: https://elsewhere.example/x.git",
            1,
        )
    )
    problems = check(argocd)
    assert "target car-1: Secret pitlane/s: kind not allowed by AppProject pitlane" in problems
    assert any(
        "repoURL https://elsewhere.example/x.git is not in AppProject sourceRepos" in p for p in problems
    )


@pytest.mark.slow
def test_a_release_bump_still_passes_everything(argocd, capsys):
    root = ["--root", str(argocd)]
    assert (
        main(
            ["deploy", "pin", *root, "--image", f"sim={SIM}", "--image", f"car={CAR}", "--model", MODEL]
            + ["--image", f"notebook={NOTEBOOK}"]
        )
        == 0
    )
    key = argocd.parent / "release.pub"
    key.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert main(["deploy", "pin", *root, "--key", str(key)]) == 0
    capsys.readouterr()
    assert main(["deploy", "check", "--released", *root]) == 0, capsys.readouterr().out
