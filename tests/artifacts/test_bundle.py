"""Model bundles through the real registry: pack, push, fetch, pull, ls; tampering and bad bundles refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from model_support import blob_file, write_gate_report

from pitlane.artifacts import bundle, oci
from pitlane.artifacts.fetch import fetch_verified
from pitlane.errors import IntegrityError, UserError
from pitlane.provenance import file_digest

pytestmark = pytest.mark.slow  # builds small TFLite models with TensorFlow (a minute on 2 cores)


@pytest.fixture(scope="module")
def pushed(registry, models, tmp_path_factory):
    gate = write_gate_report(models["a"], tmp_path_factory.mktemp("gate") / "gate.json")
    b = bundle.pack(models["a"], gate_report=gate, serial=3)
    client = oci.Client(registry.host)
    ref = bundle.push(client, b, oci.Reference(registry.host, "t/bundle"), ("serial-3", "latest"))
    return b, ref


def test_bundle_layout_and_round_trip(registry, models, pushed, tmp_path):
    b, ref = pushed
    client = oci.Client(registry.host)
    assert ref.digest == b.digest
    remote = bundle.fetch(client, ref.with_tag("latest"))
    assert remote.ref == ref
    m = remote.manifest
    assert m["artifactType"] == bundle.ARTIFACT_TYPE and m["config"]["mediaType"] == bundle.CONFIG_TYPE
    titles = [d["annotations"][bundle.TITLE] for d in m["layers"]]
    assert titles == ["pilot.tflite", "gate.json", "canary.npz"]
    c = remote.config
    assert c["schema"] == bundle.SCHEMA and c["serial"] == 3 and c["model_type"] == "linear"
    assert c["input_shape"] == [120, 160, 3] and c["gate"]["verdict"] == "pass"
    assert c["files"]["pilot.tflite"] == c["model_digest"] == file_digest(models["a"])
    paths = fetch_verified(ref, None, None, client).write(tmp_path / "out")
    assert paths["pilot.tflite"].read_bytes() == models["a"].read_bytes()
    frames, outputs = bundle.read_canary(paths["canary.npz"].read_bytes(), c["canary"]["outputs"])
    assert frames.shape == (bundle.CANARY_FRAMES, 120, 160, 3) and np.isfinite(outputs).all()
    assert bundle.next_serial(client, ref) == 4
    assert [t for t, _ in bundle.list_bundles(client, ref)] == ["latest", "serial-3"]


def test_a_second_push_of_the_same_model_uploads_no_layer_again(registry, pushed):
    b, ref = pushed
    client = oci.Client(registry.host)
    bundle.push(client, b, ref, ("again",))
    assert client.sent == len(b.manifest())  # blobs were all there: only the manifest went up


def test_tampered_layer_and_config_are_refused(fresh_registry, models, tmp_path):
    registry = fresh_registry  # its own: this test tampers with what the registry stores
    client = oci.Client(registry.host)
    gate = write_gate_report(models["b"], tmp_path / "gate.json")
    b = bundle.pack(models["b"], gate_report=gate, serial=1)
    ref = bundle.push(client, b, oci.Reference(registry.host, "t/tamper"), ("v1",))
    remote = bundle.fetch(client, ref)
    tflite = remote.layer("pilot.tflite")
    assert tflite is not None
    layer = blob_file(registry, tflite["digest"])
    original = layer.read_bytes()
    layer.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(IntegrityError, match="does not match its digest"):
        fetch_verified(ref, None, None, client).write(tmp_path / "t1")
    assert not (tmp_path / "t1").exists()  # nothing written
    layer.write_bytes(original)
    config = blob_file(registry, remote.manifest["config"]["digest"])
    config.write_bytes(config.read_bytes().replace(b'"serial":1', b'"serial":9'))
    with pytest.raises(IntegrityError, match="does not match its digest"):
        bundle.fetch(client, ref)


def test_not_a_bundle(registry, tmp_path):
    client = oci.Client(registry.host)
    cfg = oci.canonical_json({})
    client.push_blob("t/notbundle", cfg)
    m = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": oci.descriptor(oci.OCI_CONFIG, cfg),
            "layers": [],
        }
    )
    client.push_manifest("t/notbundle", m, "x")
    with pytest.raises(UserError, match="not a pitlane model bundle"):
        bundle.fetch(client, oci.Reference(registry.host, "t/notbundle", "x"))


def test_pack_refuses_what_is_not_a_car_model(models, tmp_path):
    with pytest.raises(UserError, match="not a donkeycar"):
        bundle.pack(models["wide"], gate_report=None, serial=1)
    with pytest.raises(UserError, match="carries a .tflite"):
        bundle.pack(tmp_path / "m.keras", gate_report=None, serial=1)
    bad = tmp_path / "gate.json"
    bad.write_text(json.dumps({"x": 1}))
    with pytest.raises(UserError, match="not a pitlane gate report"):
        bundle.pack(models["a"], gate_report=bad, serial=1)


def test_a_bundle_carries_its_training_frames_statistics(models, tmp_path):
    from pitlane.data.framestats import summarise
    from pitlane.provenance import run_record_path

    model = tmp_path / "m" / "pilot.tflite"
    model.parent.mkdir()
    model.write_bytes(models["a"].read_bytes())
    assert "frame_stats" not in json.loads(bundle.pack(model, gate_report=None, serial=1).config)
    stats = summarise(np.ones((3, 7)), "3 frames")
    run_record_path(model).write_text(json.dumps({"tubs": [], "extra": {"frame_stats": stats}}))
    config = json.loads(bundle.pack(model, gate_report=None, serial=1).config)
    assert config["frame_stats"] == stats
