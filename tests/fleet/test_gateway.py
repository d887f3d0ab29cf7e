"""The registry gateway in front of a real registry: a car writes and reads its own data repository with
the registry client, and nothing else; bad credentials, oversized bodies and a registry that is down each get
one clear answer."""

from __future__ import annotations

import http.client

import pytest
import requests

from pitlane.artifacts import oci
from pitlane.artifacts.registry import _free_port
from pitlane.errors import Refused
from pitlane.fleet import broker as fb
from pitlane.fleet.gateway import Gateway, GatewayConfig, check_request

from .nuc_support import needs_mosquitto

pytestmark = needs_mosquitto

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def cars(tmp_path):
    passwd = tmp_path / "passwd"
    passwords = {name: fb.add_car(passwd, name) for name in ("car-1", "car-2")}
    fb.set_password(passwd, "pitlane-ingest", "ingest-secret")
    return passwd, passwords


@pytest.fixture
def gateway(registry, cars):
    gw = Gateway(GatewayConfig(registry=registry.host, passwd=cars[0], port=0, max_body_mb=1)).start()
    yield gw
    gw.stop()


def car_client(gw: Gateway, name: str, password: str) -> oci.Client:
    return oci.Client(gw.host, auth=(name, password))


def test_the_policy_allows_only_the_cars_own_repository():
    own = "/v2/data/car-1"
    assert check_request("car-1", "GET", "/v2/", 10) is not None
    assert check_request("car-1", "HEAD", f"{own}/blobs/{DIGEST}", 10) is not None
    allowed = check_request("car-1", "POST", f"{own}/blobs/uploads/?mount={DIGEST}&from=models/pilot", 10)
    assert allowed is not None and allowed.query == ""  # no cross-repository mount
    allowed = check_request("car-1", "PUT", f"{own}/blobs/uploads/ab-12?_state=x&digest={DIGEST}&z=1", 10)
    assert allowed is not None and allowed.query == f"_state=x&digest={DIGEST.replace(':', '%3A')}"
    assert allowed.max_body == 10
    manifest = check_request("car-1", "PUT", f"{own}/manifests/session-1", 10)
    assert manifest is not None and manifest.max_body == 4 << 20
    for method, target in (
        ("GET", f"/v2/data/car-2/blobs/{DIGEST}"),
        ("PUT", "/v2/models/pilot/manifests/latest"),
        ("GET", "/v2/_catalog"),
        ("DELETE", f"{own}/manifests/{DIGEST}"),
        ("PATCH", f"{own}/blobs/uploads/ab-12"),
        ("GET", "/v2/data/car-1/../car-2/tags/list"),
        ("GET", "/v2/data%2Fcar-2/tags/list"),
        ("GET", "/v2/data/car-12/tags/list"),
        ("GET", "/v2/data/car-1/sub/tags/list"),
    ):
        assert check_request("car-1", method, target, 10) is None, (method, target)


def test_a_car_pushes_and_pulls_its_own_data_through_the_gateway(gateway, cars, registry):
    client = car_client(gateway, "car-1", cars[1]["car-1"])
    client.ping()
    digest = client.push_blob("data/car-1", b"chunk of a tub")
    assert client.blob_exists("data/car-1", digest)
    config = oci.canonical_json({"schema": "x"})
    client.push_blob("data/car-1", config)
    manifest = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": oci.descriptor(oci.OCI_CONFIG, config),
            "layers": [oci.descriptor("application/octet-stream", b"chunk of a tub")],
        }
    )
    ref = client.push_manifest("data/car-1", manifest, "session-1")
    assert client.get_manifest("data/car-1", ref).data == manifest
    assert client.pull_blob("data/car-1", digest) == b"chunk of a tub"
    assert client.tags("data/car-1") == ["session-1"]
    assert (
        oci.Client(registry.host).get_manifest("data/car-1", ref).data == manifest
    )  # really in the registry


def test_another_cars_data_and_the_models_are_refused(gateway, cars, registry):
    real = oci.Client(registry.host)
    theirs = real.push_blob("data/car-2", b"car-2's data")
    client = car_client(gateway, "car-1", cars[1]["car-1"])
    with pytest.raises(Refused, match="403"):
        client.pull_blob("data/car-2", theirs)
    with pytest.raises(Refused, match="403"):
        client.push_blob("data/car-2", b"planted")
    with pytest.raises(Refused, match="403"):
        client.push_blob("models/pilot", b"a model")
    with pytest.raises(Refused, match="403"):
        client.catalog()
    # a cross-repository mount is not passed on: the upload starts empty (202), nothing is mounted (201)
    url = f"http://{gateway.host}/v2/data/car-1/blobs/uploads/?mount={theirs}&from=data/car-2"
    resp = requests.post(url, auth=("car-1", cars[1]["car-1"]), timeout=5)
    assert resp.status_code == 202
    assert not real.blob_exists("data/car-1", theirs)


def test_bad_credentials_are_refused_with_a_challenge(gateway, cars):
    base = f"http://{gateway.host}/v2/data/car-1/tags/list"
    for auth in (None, ("car-1", cars[1]["car-2"]), ("car-9", "x"), ("pitlane-ingest", "ingest-secret")):
        resp = requests.get(base, auth=auth, timeout=5)
        assert resp.status_code == 401, auth
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="pitlane fleet"'
        assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"
    resp = requests.get(base, headers={"Authorization": "Basic !!not-base64"}, timeout=5)
    assert resp.status_code == 401


def test_a_body_over_the_limit_is_refused_before_it_is_read(gateway, cars):
    client = car_client(gateway, "car-1", cars[1]["car-1"])
    start = client.session.post(f"http://{gateway.host}/v2/data/car-1/blobs/uploads/", timeout=5)
    location = start.headers["Location"]
    assert location.startswith("/v2/data/car-1/blobs/uploads/")  # back through the gateway
    conn = http.client.HTTPConnection(gateway.host, timeout=5)
    conn.putrequest("PUT", f"{location}&digest={DIGEST}")
    conn.putheader("Authorization", requests.auth._basic_auth_str("car-1", cars[1]["car-1"]))
    conn.putheader("Content-Length", str(2 << 20))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and b"over the 1048576 allowed" in resp.read()
    conn.close()
    chunked = requests.put(
        f"http://{gateway.host}{location}&digest={DIGEST}",
        data=iter([b"x" * 10]),  # no length: requests sends it chunked
        auth=("car-1", cars[1]["car-1"]),
        timeout=5,
    )
    assert chunked.status_code == 411


def test_a_registry_that_is_down_is_a_502(cars):
    down = f"127.0.0.1:{_free_port('127.0.0.1')}"
    gw = Gateway(GatewayConfig(registry=down, passwd=cars[0], port=0)).start()
    try:
        resp = requests.get(
            f"http://{gw.host}/v2/data/car-1/tags/list", auth=("car-1", cars[1]["car-1"]), timeout=10
        )
        assert resp.status_code == 502 and "unreachable" in resp.json()["errors"][0]["message"]
    finally:
        gw.stop()
