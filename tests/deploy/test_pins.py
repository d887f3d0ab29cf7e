"""Pins: rewritten line by line, digests only, nothing written on bad input, placeholders reported."""

from __future__ import annotations

import difflib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pitlane.cli import main
from pitlane.deploy.pins import IMAGES_FILE, KEY_FILE, MODEL_FILE, parse_ref, pin, read_pins
from pitlane.errors import UserError

SIM = "127.0.0.1:5000/pitlane/sim@sha256:" + "a" * 64
CAR = "127.0.0.1:5000/pitlane/car@sha256:" + "b" * 64
MODEL = "127.0.0.1:5000/pitlane/models@sha256:" + "c" * 64


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), n=0, lineterm="")
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_repository_pins_are_placeholders_until_a_release():
    from .conftest import ARGOCD

    pins = read_pins(ARGOCD)
    assert sorted(pins.images) == ["car", "notebook", "sim"]  # notebook: the NUC's RayCluster (and hub)
    assert [p.split(":")[0] for p in pins.placeholders()] == [
        "image car",
        "image notebook",
        "image sim",
        "model",
        "key",
    ]


def test_pin_changes_one_line_per_value(argocd):
    images_before = (argocd / IMAGES_FILE).read_text()
    model_before = (argocd / MODEL_FILE).read_text()
    changes = pin(argocd, images={"sim": SIM}, model=MODEL)
    assert len(changes) == 2
    # the sim pin: its repository and digest lines; the car pin untouched
    assert changed_lines(images_before, (argocd / IMAGES_FILE).read_text()) == [
        "-  newName: registry.invalid/pitlane/sim",
        "-  digest: sha256:" + "0" * 64,
        "+  newName: 127.0.0.1:5000/pitlane/sim",
        "+  digest: sha256:" + "a" * 64,
    ]
    model_diff = changed_lines(model_before, (argocd / MODEL_FILE).read_text())
    assert len(model_diff) == 2 and model_diff[1].strip() == f"+      - model-ref={MODEL}".strip()
    pins = read_pins(argocd)
    assert pins.images["sim"] == SIM and pins.model == MODEL
    assert pins.images["car"].startswith("registry.invalid/")
    assert pin(argocd, images={"sim": SIM}, model=MODEL) == []  # same pins again: no change


def test_an_image_the_manifests_pin_but_pitlane_does_not_build_is_pinned_too(argocd):
    """The notebook image (the RayCluster's) has a pin in pins/images.yaml: a release can set it."""
    notebook = "127.0.0.1:5000/pitlane/notebook@sha256:" + "d" * 64
    assert pin(argocd, images={"notebook": notebook}) == [
        f"image notebook: registry.invalid/pitlane/notebook@sha256:{'0' * 64} -> {notebook}"
    ]
    assert read_pins(argocd).images["notebook"] == notebook


@pytest.mark.parametrize(
    ("images", "model", "words"),
    [
        ({"car": "127.0.0.1:5000/pitlane/car:v1.2.0"}, None, "not pinned by digest"),
        ({"car": "pitlane/car:latest"}, None, "not pinned by digest"),
        ({"car": "pitlane/car:v1@sha256:" + "b" * 64}, None, "is not REPO@sha256"),
        ({"car": CAR}, "models@sha256:abc", "is not REPO@sha256"),
        ({"car": CAR}, "r/models:v3", "--model"),
        ({"gpu": CAR}, None, "unknown image 'gpu'"),
    ],
)
def test_bad_reference_is_refused_and_writes_nothing(argocd, images, model, words):
    before = {p: (argocd / p).read_text() for p in (IMAGES_FILE, MODEL_FILE)}
    with pytest.raises(UserError, match=words):
        pin(argocd, images=images, model=model)
    assert {p: (argocd / p).read_text() for p in before} == before


def test_parse_ref_splits_repository_and_digest():
    assert parse_ref(SIM, "x") == ("127.0.0.1:5000/pitlane/sim", "sha256:" + "a" * 64)


def test_hand_edited_tag_in_pins_file_names_the_file(argocd):
    path = argocd / IMAGES_FILE
    path.write_text(path.read_text().replace("digest: sha256:" + "0" * 64, "digest: latest", 1))
    with pytest.raises(UserError, match=rf"{path}: pitlane-sim: .*not REPO@sha256"):
        read_pins(argocd)


def test_key_pin_accepts_p256_only(argocd, tmp_path):
    good = tmp_path / "cosign.pub"
    good.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    rsa_key = tmp_path / "rsa.pub"
    rsa_key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    junk = tmp_path / "junk.pub"
    junk.write_text("not a key\n")
    for bad, words in ((rsa_key, "ECDSA P-256"), (junk, "not a PEM public key")):
        with pytest.raises(UserError, match=words):
            pin(argocd, key=bad)
    assert pin(argocd, key=good) == [f"key: {KEY_FILE} <- {good}"]
    assert (argocd / KEY_FILE).read_bytes() == good.read_bytes()
    assert not [p for p in read_pins(argocd).placeholders() if p.startswith("key")]


def test_cli_pin_refuses_a_tag_in_one_line(argocd, capsys):
    assert main(["deploy", "pin", "--root", str(argocd), "--image", "car=reg/pitlane/car:v1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pitlane: error: --image car: 'reg/pitlane/car:v1' is not pinned by digest")
    assert "\n" not in err
    assert main(["deploy", "pin", "--root", str(argocd), "--image", f"car={CAR}"]) == 0
    assert "image car: registry.invalid/pitlane/car@" in capsys.readouterr().out
