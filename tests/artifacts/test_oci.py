"""The OCI client against the real registry: blobs and manifests round trip, digests are checked."""

from __future__ import annotations

import json

import pytest
from model_support import blob_file

from pitlane.artifacts import oci
from pitlane.artifacts.registry import Registry, RegistryConfig
from pitlane.errors import UserError


def test_blob_and_artifact_manifest_round_trip(registry):
    client = oci.Client(registry.host)
    repo = "t/oci-roundtrip"
    config = oci.canonical_json({"hello": "world"})
    layer = b"model bytes" * 100
    client.push_blob(repo, config)
    client.push_blob(repo, layer)
    assert client.blob_exists(repo, oci.sha256_digest(layer))
    manifest = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "artifactType": "application/vnd.example.thing.v1",
            "config": oci.descriptor("application/vnd.example.config.v1+json", config),
            "layers": [oci.descriptor("application/octet-stream", layer)],
        }
    )
    digest = client.push_manifest(repo, manifest, "v1")
    got = client.get_manifest(repo, digest)
    assert got.data == manifest  # stored byte for byte, artifactType included
    assert got.json()["artifactType"] == "application/vnd.example.thing.v1"
    assert client.resolve(repo, "v1") == digest
    assert client.pull_blob(repo, oci.sha256_digest(layer)) == layer
    assert client.tags(repo) == ["v1"]
    assert repo in client.catalog()


def test_tampered_blob_is_refused(registry):
    client = oci.Client(registry.host)
    repo = "t/oci-tamper"
    data = b"the real bytes" * 50
    digest = client.push_blob(repo, data)
    path = blob_file(registry, digest)
    path.write_bytes(b"X" + data[1:])
    with pytest.raises(oci.IntegrityError, match="does not match its digest"):
        client.pull_blob(repo, digest)


def test_missing_things_and_down_registry_are_clear_errors(registry, tmp_path):
    client = oci.Client(registry.host)
    with pytest.raises(oci.NotFound, match="not found"):
        client.get_manifest("t/none", "latest")
    assert client.tags("t/none") == []
    reg = Registry(RegistryConfig(storage=tmp_path / "r")).start()
    down = oci.Client(reg.host)
    reg.stop()
    with pytest.raises(oci.RegistryError, match="unreachable"):
        down.ping()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("models/pilot", "names no registry"),
        ("127.0.0.1:5000/Models", "not a valid repository"),
        ("127.0.0.1:5000/m@sha256:abc", "not a sha256 digest"),
        ("", "not an image reference"),
    ],
)
def test_bad_references(text, why):
    with pytest.raises(UserError, match=why):
        oci.Reference.parse(text)


def test_reference_forms():
    d = "sha256:" + "a" * 64
    ref = oci.Reference.parse(f"127.0.0.1:5000/models/pilot:v1@{d}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("127.0.0.1:5000", "models/pilot", "v1", d)
    assert str(ref) == f"127.0.0.1:5000/models/pilot@{d}"
    assert str(oci.Reference.parse("localhost/x")) == "localhost/x:latest"
    assert json.loads(oci.canonical_json({"b": 1, "a": 2})) == {"a": 2, "b": 1}


def test_basic_auth_goes_with_every_request():
    """A car pushes through the NUC's gateway with its own credentials (HTTP basic auth)."""
    import base64
    import http.server
    import threading

    seen: list[str | None] = []

    class Gate(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        assert not oci.Client(host, auth=("car-1", "pw")).blob_exists("data/car-1", "sha256:" + "0" * 64)
        assert not oci.Client(host).blob_exists("data/car-1", "sha256:" + "0" * 64)
    finally:
        server.shutdown()
    assert seen == ["Basic " + base64.b64encode(b"car-1:pw").decode(), None]
