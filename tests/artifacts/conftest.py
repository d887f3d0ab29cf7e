"""Small real donkeycar-shaped TFLite models (built in seconds, no training) and gate reports for them."""

from __future__ import annotations

import pytest
from model_support import make_tflite

from pitlane.artifacts import oci, signing


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """{"a", "b" (another linear model), "nan", "wide", "far"} -> .tflite path, each in its own folder."""
    root = tmp_path_factory.mktemp("models")
    kinds = {
        "a": ("linear", 0),
        "b": ("linear", 1),
        "nan": ("nan", 2),
        "wide": ("wide", 3),
        "far": ("far", 4),
    }
    return {
        name: make_tflite(root / name / "pilot.tflite", seed, kind) for name, (kind, seed) in kinds.items()
    }


@pytest.fixture()
def keys(tmp_path, monkeypatch):
    monkeypatch.setenv(signing.PASSWORD_ENV, "correct horse")
    key, pub = signing.generate_keys(tmp_path / "k")
    other_key, other_pub = signing.generate_keys(tmp_path / "other")
    return signing.load_private_key(key), signing.load_public_key(pub), signing.load_public_key(other_pub)


def _push_thing(client: oci.Client, repo: str, text: bytes) -> oci.Reference:
    config = oci.canonical_json({"t": text.decode()})
    client.push_blob(repo, config)
    m = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": oci.descriptor(oci.OCI_CONFIG, config),
            "layers": [],
        }
    )
    digest = client.push_manifest(repo, m, "v" + str(len(text)))
    return oci.Reference(client.registry, repo, None, digest)


@pytest.fixture()
def push_thing():
    """push_thing(client, repo, text) -> the reference of a small image manifest (any manifest can be signed)."""
    return _push_thing
