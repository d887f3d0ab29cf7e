"""Signing keys, a small manifest to sign and a registry of a test's own, for the artifacts tests."""

from __future__ import annotations

import shutil

import pytest

from pitlane.artifacts import oci, signing
from pitlane.artifacts.registry import BINARY, Registry, RegistryConfig


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


@pytest.fixture()
def fresh_registry(tmp_path):
    """A registry of the test's own (function scope): for tests that tamper with what it stores."""
    if not shutil.which(BINARY):
        pytest.skip("Debian's docker-registry is not installed (apt-get install docker-registry)")
    reg = Registry(RegistryConfig(storage=tmp_path / "registry")).start()
    yield reg
    reg.stop()
