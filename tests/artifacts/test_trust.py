"""What the car requires beyond a signature, through the real registry: the serial the pipeline signed and
a gate attestation, by the same key, that passed for exactly this bundle. Each attack is a bundle signed by
a real key and refused with one line that names the reason and what to do.

Bundles are built by hand (a few bytes stand in for the model: nothing here loads one), so no TensorFlow.
"""

from __future__ import annotations

import json

import pytest
from model_support import CANARY, TFLITE, gate_doc

from pitlane.artifacts import attest, bundle, oci, signing, trust
from pitlane.artifacts.cache import BlobCache
from pitlane.artifacts.fetch import fetch_verified
from pitlane.errors import Refused, SignatureError


def make_bundle(serial: int, tflite: bytes = TFLITE, gate_layer: dict | None = None) -> bundle.Bundle:
    layers: list[tuple[str, str, bytes]] = [
        (bundle.TFLITE_NAME, bundle.TFLITE_TYPE, tflite),
        (bundle.CANARY_NAME, bundle.CANARY_TYPE, CANARY),
    ]
    if gate_layer is not None:
        layers.append((bundle.GATE_NAME, bundle.GATE_TYPE, json.dumps(gate_layer).encode()))
    config = {
        "schema": bundle.SCHEMA,
        "serial": serial,
        "files": {title: oci.sha256_digest(data) for title, _, data in layers},
        "model_digest": oci.sha256_digest(tflite),
        "canary": {"frames": 0, "outputs": []},
        "gate": {"verdict": "pass"} if gate_layer is not None else None,  # the pusher's own summary
    }
    return bundle.Bundle(oci.canonical_json(config), tuple(layers))


@pytest.fixture()
def world(registry, keys, tmp_path, monkeypatch):
    """The model key, the image key (a different one), and a repository of this test's own."""
    key, pub, _ = keys
    monkeypatch.setenv(signing.PASSWORD_ENV, "image key")
    image_key, _ = signing.generate_keys(tmp_path / "image")
    client = oci.Client(registry.host)
    repo = oci.Reference(registry.host, f"trust/{tmp_path.name.lower().replace('_', '-')}")
    return dict(client=client, key=key, pub=pub, image_key=signing.load_private_key(image_key), repo=repo)


def push(world, b: bundle.Bundle) -> oci.Reference:
    return bundle.push(world["client"], b, world["repo"])


def release(world, b: bundle.Bundle, serial: int, report: dict | None = None, key="key") -> oci.Reference:
    """Push and sign `b` as the release pipeline does: its serial in the signature, a gate report attested."""
    ref = push(world, b)
    report = report if report is not None else gate_doc(oci.sha256_digest(TFLITE))
    trust.sign_release(world["client"], ref, world[key], serial=serial, report=report)
    return ref


def check(world, ref: oci.Reference) -> trust.Release:
    return trust.check_release(fetch_verified(ref, world["pub"], None, world["client"]))


def test_a_release_signed_with_its_serial_and_a_passing_gate_is_trusted_online_and_offline(world, tmp_path):
    ref = release(world, make_bundle(serial=4), serial=4)
    got = check(world, ref)
    assert got.serial == 4 and got.gate.passed and got.gate.model_digest == oci.sha256_digest(TFLITE)
    payload = fetch_verified(ref, world["pub"], None, world["client"]).signed_payload
    assert payload is not None and payload["optional"] == {"pitlane.dev/serial": "4"}  # the shared format
    cache = BlobCache(tmp_path / "cache")
    fetch_verified(ref, world["pub"], cache, world["client"])
    assert trust.check_release(fetch_verified(ref, world["pub"], cache, None)).serial == 4  # offline


def test_a_signed_bundle_without_a_gate_attestation_is_refused(world):
    ref = push(world, make_bundle(serial=1))
    signing.sign(world["client"], ref, world["key"], {trust.SERIAL_ANNOTATION: "1"})
    with pytest.raises(SignatureError, match="has no gate attestation signed by this key .* release it"):
        check(world, ref)


def test_a_forged_gate_json_layer_is_never_read(world):
    """The pusher's gate.json says pass (and so does the config's summary); the gate run attested fail."""
    forged = gate_doc(oci.sha256_digest(TFLITE))
    ref = release(
        world, make_bundle(serial=2, gate_layer=forged), 2, gate_doc(forged["model_digest"], "fail")
    )
    with pytest.raises(Refused, match="verdict is 'fail': the model failed the gate"):
        check(world, ref)
    # and a gate.json alone (signed, nothing attested) counts for nothing
    alone = push(world, make_bundle(serial=3, gate_layer=forged, tflite=TFLITE + b"x"))
    signing.sign(world["client"], alone, world["key"], {trust.SERIAL_ANNOTATION: "3"})
    with pytest.raises(SignatureError, match="a gate.json inside the bundle does not count"):
        check(world, alone)


def test_a_bundle_signed_by_the_image_key_is_refused(world):
    ref = release(world, make_bundle(serial=5), serial=5, key="image_key")
    with pytest.raises(SignatureError, match="does not verify with this public key"):
        check(world, ref)


@pytest.mark.parametrize(
    ("attack", "why"),
    [
        ("no serial", "carries no release serial (pitlane.dev/serial: none)"),
        ("self-chosen serial", "config says release serial 1000000000 but its signature 6"),
        ("attestation for another model", "its gate attestation is for model sha256:"),
        ("attestation for another bundle", "its gate attestation names bundle 'sha256:"),
        ("attestation for another serial", "its gate attestation names release serial 7"),
    ],
)
def test_what_the_signature_and_attestation_must_agree_on(world, attack, why):
    b = make_bundle(serial=6)
    report = gate_doc(oci.sha256_digest(TFLITE))
    if attack == "no serial":  # signed and attested, but not by the pipeline's signing step
        ref = push(world, b)
        signing.sign(world["client"], ref, world["key"])
        attest.attest(world["client"], ref, world["key"], attest.GATE_PREDICATE, report)
    elif attack == "self-chosen serial":  # the pusher wrote a huge serial; the pipeline signed 6
        ref = release(world, make_bundle(serial=10**9), 6)
    elif attack == "attestation for another model":
        ref = release(world, b, 6, gate_doc("sha256:" + "5" * 64))
    else:
        ref = push(world, b)
        signing.sign(world["client"], ref, world["key"], {trust.SERIAL_ANNOTATION: "6"})
        other = "sha256:" + "6" * 64 if attack == "attestation for another bundle" else str(ref.digest)
        serial = 7 if attack == "attestation for another serial" else 6
        predicate = trust.gate_predicate(report, other, serial)
        attest.attest(world["client"], ref, world["key"], attest.GATE_PREDICATE, predicate)
    with pytest.raises(Refused) as refused:
        check(world, ref)
    assert why in str(refused.value) and "\n" not in str(refused.value)
    assert "release" in str(refused.value)  # what to do
