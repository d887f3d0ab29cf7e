"""The OCI client against the real registry: blobs and manifests round trip, digests are checked, failures
raise by cause; and the one reference grammar, run against the parser and every module that reads one."""

from __future__ import annotations

import json
import re

import pytest
from model_support import blob_file

from pitlane.artifacts import oci
from pitlane.artifacts.registry import Registry, RegistryConfig
from pitlane.artifacts.relay import Relay
from pitlane.errors import BadInput, IntegrityError, NotFound, Unavailable, UserError


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
    with pytest.raises(IntegrityError, match="does not match its digest"):
        client.pull_blob(repo, digest)
    with pytest.raises(IntegrityError, match="more than the 10 bytes expected"):
        client.pull_blob(repo, digest, max_bytes=10)  # stopped while reading, not after


def test_missing_things_and_down_registry_are_clear_errors(registry, tmp_path):
    client = oci.Client(registry.host)
    with pytest.raises(NotFound, match="not found"):
        client.get_manifest("t/none", "latest")
    assert client.tags("t/none") == []
    missing = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": oci.descriptor(oci.OCI_CONFIG, b"never pushed"),
            "layers": [],
        }
    )
    with pytest.raises(BadInput, match="answered 400"):  # the registry refuses it: a blob is missing
        client.push_manifest("t/none", missing, "v1")
    reg = Registry(RegistryConfig(storage=tmp_path / "r")).start()
    down = oci.Client(reg.host)
    reg.stop()
    with pytest.raises(Unavailable, match="unreachable"):
        down.ping()


def test_a_not_found_answer_keeps_the_connection(registry):
    """ "Is there an attestation?" is mostly answered 404: that must not cost a new connection each time."""
    client = oci.Client(registry.host)
    digest = client.push_blob("t/oci-keep", b"kept")
    relay = Relay(registry.host)
    try:
        via = oci.Client(relay.host)
        for _ in range(3):
            with pytest.raises(NotFound):
                via.get_manifest("t/oci-keep", "sha256-" + "0" * 64 + ".att")
            assert via.pull_blob("t/oci-keep", digest, size=4) == b"kept"
        assert relay.connections == 1
    finally:
        relay.close()


def test_a_link_cut_anywhere_is_unavailable_never_an_integrity_error(registry):
    """Cut in the status line, the headers or the body: the car must retry, not refuse the model."""
    client = oci.Client(registry.host)
    data = bytes(range(256)) * 100
    digest = client.push_blob("t/oci-cut", data)
    manifest = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": oci.descriptor(oci.OCI_CONFIG, data),
            "layers": [],
            "annotations": {"padding": "x" * 3000},
        }
    )
    manifest_digest = client.push_manifest("t/oci-cut", manifest, "v1")
    for cut in range(10, 3300, 20):  # the manifest's size is not known in advance: only the link's framing
        relay = Relay(registry.host, cut_after=cut)
        try:
            with pytest.raises(Unavailable, match="registry 127.0.0.1"):
                oci.Client(relay.host).get_manifest("t/oci-cut", manifest_digest)
        finally:
            relay.close()
    for cut in (10, 60, 150, 250, 400, 1000, 20000):
        relay = Relay(registry.host, cut_after=cut)
        try:
            with pytest.raises(Unavailable, match="registry 127.0.0.1"):
                oci.Client(relay.host).pull_blob("t/oci-cut", digest, size=len(data))
        finally:
            relay.close()
    relay = Relay(registry.host)
    try:
        assert oci.Client(relay.host).pull_blob("t/oci-cut", digest, size=len(data)) == data
    finally:
        relay.close()


def test_a_manifest_is_read_no_further_than_its_cap(registry):
    client = oci.Client(registry.host)
    config = oci.canonical_json({})
    client.push_blob("t/oci-cap", config)
    manifest = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": oci.descriptor(oci.OCI_CONFIG, config),
            "layers": [],
            "annotations": {"padding": "x" * 5000},
        }
    )
    digest = client.push_manifest("t/oci-cap", manifest, "v1")
    with pytest.raises(IntegrityError, match="more than the 1024 bytes expected"):
        client.get_manifest("t/oci-cap", digest, max_bytes=1024)
    assert client.get_manifest("t/oci-cap", digest).data == manifest


D = "sha256:" + "ab" * 32
# (reference, parses?, pinned by digest alone?): the one grammar, and what every caller must agree on
REFERENCES = [
    (f"127.0.0.1:5000/models/my__pilot@{D}", True, True),  # '__' is a separator
    (f"127.0.0.1:5000/models/pilot@{D}", True, True),
    (f"registry.example/pitlane/car@{D}", True, True),
    (f"localhost/x@{D}", True, True),
    (f"localhost:5000/a/b-c.d_e@{D}", True, True),
    (f"reg.io/a--b/c@{D}", True, True),  # dashes repeat
    (f"My-Registry.local:443/p/car@{D}", True, True),  # host names are case-insensitive
    (f"[::1]:5000/models/pilot@{D}", True, True),  # IPv6
    (f"registry.invalid/pitlane/models@sha256:{'0' * 64}", True, True),
    ("127.0.0.1:5000/models/pilot:v1", True, False),  # a tag: a reference, not a pin
    (f"127.0.0.1:5000/models/pilot:v1@{D}", True, False),  # a tag beside the digest: not a pin
    ("localhost/x", True, False),
    (f"reg.io:abc/models/pilot@{D}", False, False),  # a port is digits
    (f"127.0.0.1:99999/models/pilot@{D}", False, False),  # ... and a TCP port
    (f"127.0.0.1:5000/models/pilot@{D}\n", False, False),  # a trailing newline
    (f" 127.0.0.1:5000/models/pilot@{D}", False, False),
    (f"models/pilot@{D}", False, False),  # no registry
    (f"pitlane/car:v1@{D}", False, False),
    (f"127.0.0.1:5000/Models/pilot@{D}", False, False),  # repositories are lower case
    (f"127.0.0.1:5000/models/_pilot@{D}", False, False),
    (f"127.0.0.1:5000/models/pi___lot@{D}", False, False),
    (f"127.0.0.1:5000//pilot@{D}", False, False),
    ("127.0.0.1:5000/models/pilot@sha256:abc", False, False),
    (f"127.0.0.1:5000/models/pilot@sha256:{'AB' * 32}", False, False),
    (f"127.0.0.1:5000/models/pilot@sha512:{'ab' * 64}", False, False),
    (f"127.0.0.1:5000/models/pilot:-v1@{D}", False, False),
    ("", False, False),
]


@pytest.mark.parametrize(("text", "parses", "pinned"), REFERENCES)
def test_the_reference_grammar(text, parses, pinned):
    if not parses:
        with pytest.raises(BadInput):
            oci.Reference.parse(text)
        return
    ref = oci.Reference.parse(text)
    assert ref.pinned == pinned
    assert oci.Reference.parse(str(ref)).name == ref.name  # prints as it parses
    if pinned:
        assert str(ref) == text


@pytest.mark.parametrize(("text", "parses", "pinned"), REFERENCES)
def test_every_caller_reads_a_pin_with_the_one_grammar(text, parses, pinned):
    """release.yaml, the GitOps pins, rendered manifests and the car accept exactly the pins."""
    from pitlane.car.model_manager import parse_desired
    from pitlane.deploy.pins import parse_ref
    from pitlane.deploy.validate import is_digest_pinned
    from pitlane.release.config import check_digest_ref

    assert is_digest_pinned(text) == pinned
    for read in (check_digest_ref, lambda t: parse_ref(t, "--model"), parse_desired):
        if pinned:
            read(text)
        else:
            with pytest.raises(BadInput):
                read(text)
    if pinned:
        ref = oci.Reference.parse(text)
        assert parse_ref(text, "--model") == (ref.name, ref.digest)


@pytest.mark.parametrize(("text", "parses", "pinned"), REFERENCES)
def test_image_repositories_use_the_one_grammar(text, parses, pinned):
    """release.yaml's image repositories: REGISTRY/REPO, no tag, no digest."""
    from pitlane.release.config import check_repository

    ref = oci.Reference.parse(text) if parses else None
    if ref is not None and ref.tag is None:
        assert check_repository(ref.name, "images.car") == ref.name
    if ref is None or ref.tag or ref.digest:
        with pytest.raises(BadInput, match="no tag, no digest"):
            check_repository(text, "images.car")


@pytest.mark.parametrize(
    ("registry", "ok"),
    [
        ("127.0.0.1:5000", True),
        ("localhost", True),
        ("[::1]:5000", True),
        ("registry.example", True),
        ("reg.io:abc", False),
        ("127.0.0.1:99999", False),
        ("127.0.0.1:5000\n", False),
        ("pitlane", False),
        ("http://127.0.0.1:5000", False),
    ],
)
def test_image_pushes_name_their_registry_with_the_one_grammar(registry, ok):
    """`pitlane images build --registry`: where each image goes, checked before anything is built."""
    from pitlane.images.push import target

    if ok:
        assert target(registry, "car") == oci.Reference(registry, "pitlane/car")
    else:
        with pytest.raises(BadInput, match="--registry"):
            target(registry, "car")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("models/pilot", "names no registry"),
        ("127.0.0.1:5000/Models", "not a valid repository"),
        ("127.0.0.1:5000/m@sha256:abc", "not a sha256 digest"),
        ("reg.io:abc/m", "not a registry HOST[:PORT]"),
        ("127.0.0.1:5000/m:-x", "not a valid tag"),
        ("127.0.0.1:5000/m\n", "whitespace"),
        ("", "not an image reference"),
    ],
)
def test_bad_references_say_which_part_is_wrong(text, why):
    with pytest.raises(UserError, match=re.escape(why)):
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
