"""Signing a bundle as a release against a real registry: the attestation is the signer's gate report (never
the pushed gate.json), the serial is the signer's (never the pusher's), and config, signature and
attestation agree on it."""

from __future__ import annotations

import hashlib
import json

import pytest
from model_support import write_gate_report

from pitlane.artifacts import attest, bundle, oci, release_signing, signing
from pitlane.artifacts.fetch import fetch_verified
from pitlane.errors import Refused

pytestmark = pytest.mark.slow  # builds small TFLite models with TensorFlow (a minute on 2 cores)


@pytest.fixture
def key(tmp_path, monkeypatch):
    monkeypatch.setenv(signing.PASSWORD_ENV, "s3cret")
    path, _ = signing.generate_keys(tmp_path / "model")
    return signing.load_private_key(path)


def push(registry, model, repo: str, gate, serial: int) -> tuple[oci.Client, oci.Reference]:
    client = oci.Client(registry.host)
    b = bundle.pack(model, gate_report=gate, serial=serial)
    return client, bundle.push(client, b, oci.Reference(registry.host, repo), (f"serial-{serial}",))


def test_a_forged_gate_json_is_never_attested(registry, models, key, tmp_path):
    """A model that fails the gate, pushed with a hand-written `{"verdict": "pass"}`: the bundle alone is
    unsigned and ungated; the signer's own (failing) gate run refuses it; and when a real run passed, the
    attestation is that run's report, byte for byte, not the bundle's layer."""
    forged = write_gate_report(models["b"], tmp_path / "forged.json", verdict="pass")
    client, ref = push(registry, models["b"], "rs/forged", forged, serial=1)
    got = fetch_verified(ref, None, None, client)
    assert json.loads(got.layers[bundle.GATE_NAME])["verdict"] == "pass"  # what the pusher claims
    failing = write_gate_report(models["b"], tmp_path / "run.json", verdict="fail").read_bytes()
    with pytest.raises(Refused, match="verdict is 'fail', not 'pass': nothing is signed"):
        release_signing.sign_release(client, ref, key, failing, 1)
    assert signing.suffix_tag(ref.digest or "", "sig") not in client.tags(ref.repository)
    with pytest.raises(signing.SignatureError, match="is not signed"):
        fetch_verified(ref, key.public_key(), None, client)

    client, ref = push(
        registry, models["a"], "rs/honest", write_gate_report(models["a"], tmp_path / "p.json"), 1
    )
    run = json.loads(write_gate_report(models["a"], tmp_path / "trusted.json").read_text())
    run["wall_seconds"] = 12.5  # the trusted run's own report differs from the pushed one
    run["policy"] = {"scenes": ["generated_track"], "laps": 1}
    report = json.dumps(run).encode()
    done = release_signing.sign_release(client, ref, key, report, 1, "reg/pitlane/tools@sha256:" + "0" * 64)
    predicate = attest.verify_attestation(client, done.ref, key.public_key(), attest.GATE_PREDICATE)
    assert predicate["wall_seconds"] == 12.5
    assert predicate["gate_report_digest"] == "sha256:" + hashlib.sha256(report).hexdigest()
    assert predicate["bundle_digest"] == done.ref.digest and predicate["serial"] == 1
    assert predicate["model_digest"] == bundle.fetch(client, done.ref).config["model_digest"]
    assert predicate["policy"] == run["policy"] and predicate["pitlane_version"] and predicate["tools_image"]


def test_the_pushers_serial_is_replaced_by_the_signers(registry, models, key, tmp_path):
    """A pusher chose serial 999999 (a fleet lock-out): the signer signs the serial it assigned, in the
    signature's `pitlane.dev/serial`, the config (a copy of the bundle) and the attestation; the pusher's
    bundle stays unsigned. Signing it again adds nothing."""
    gate = write_gate_report(models["c"], tmp_path / "gate.json")
    client, pushed = push(registry, models["c"], "rs/serial", gate, serial=999999)
    repo = oci.Reference(registry.host, "rs/serial")
    assert release_signing.highest_signed_serial(client, repo, key.public_key()) == 0
    done = release_signing.sign_release(client, pushed, key, gate.read_bytes(), 1)
    assert done.ref != pushed and done.signed_now and done.attested_now
    verified = fetch_verified(done.ref, key.public_key(), None, client)
    assert verified.serial == 1 and verified.layers[bundle.TFLITE_NAME] == models["c"].read_bytes()
    payload = signing.verify(client, done.ref, key.public_key()).payload
    assert payload["optional"] == {release_signing.SERIAL_ANNOTATION: "1"}
    assert release_signing.serial_of(payload) == 1
    assert release_signing.signed_serial(client, pushed, key.public_key()) is None
    assert release_signing.highest_signed_serial(client, repo, key.public_key()) == 1
    again = release_signing.sign_release(client, pushed, key, gate.read_bytes(), 1)
    assert again.ref == done.ref and not again.signed_now and not again.attested_now
    layers = client.get_manifest(repo.repository, signing.suffix_tag(done.ref.digest or "", "sig")).json()[
        "layers"
    ]
    assert len(layers) == 1  # one signature, not two


@pytest.mark.parametrize(
    ("optional", "serial"),
    [
        ({"pitlane.dev/serial": "7"}, 7),
        ({"pitlane.dev/serial": "-1"}, None),
        ({"pitlane.dev/serial": "٣"}, None),  # a digit, but not ASCII
        ({"pitlane.dev/serial": 7}, None),  # the format is a string
        ({"serial": "7"}, None),  # the key an older pitlane wrote: not a release serial
        (None, None),
    ],
)
def test_the_serial_is_read_only_in_its_exact_format(optional, serial):
    assert release_signing.serial_of({"critical": {}, "optional": optional}) == serial
