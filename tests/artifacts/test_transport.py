"""A registry that never stops sending, or sends one byte a second: the client reads no further than the
bound of what it asked for, and a pull ends within its wall-clock deadline (`oci.Client.deadline`,
`pitlane.artifacts.transport`), whatever the registry does; the next pull starts clean."""

from __future__ import annotations

import time

import pytest
from hostile_registry import HostileRegistry

from pitlane.artifacts import oci, transport
from pitlane.errors import IntegrityError, Unavailable

DATA = bytes(range(256)) * 64  # [16 KiB] a blob


@pytest.fixture()
def hostile(registry):
    """A hostile registry in front of the session's registry, and a blob that is really there."""
    client = oci.Client(registry.host)
    digest = client.push_blob("t/hostile", DATA)
    h = HostileRegistry(registry.host, trickle_s=0.2)
    yield h, digest
    h.close()


@pytest.mark.parametrize("how", ["endless", "huge"])
def test_an_endless_blob_is_read_no_further_than_its_descriptor_size(hostile, tmp_path, how):
    h, digest = hostile
    h.attack(digest, how)
    client = oci.Client(h.host)
    dest = tmp_path / "blob.part"
    t0 = time.monotonic()
    with pytest.raises(IntegrityError, match=f"more than the {len(DATA)} bytes expected"):
        client.pull_blob_to("t/hostile", digest, len(DATA), dest)
    assert time.monotonic() - t0 < 5.0
    assert not dest.exists()  # nothing half-written is left
    assert client.received <= len(DATA) + oci.CHUNK  # stopped at the bound, never buffered more
    with pytest.raises(IntegrityError, match="more than the"):
        client.pull_blob("t/hostile", digest, size=len(DATA))


def test_an_endless_manifest_stops_at_its_cap(hostile):
    h, _ = hostile
    digest = "sha256:" + "3" * 64
    h.attack(digest, "endless")
    client = oci.Client(h.host)
    with pytest.raises(IntegrityError, match="more than the 65536 bytes expected"):
        client.get_manifest("t/hostile", digest, max_bytes=64 << 10)
    assert client.received <= (64 << 10) + oci.CHUNK


@pytest.mark.parametrize("how", ["trickle", "slow-status"])
def test_a_trickling_registry_ends_the_pull_at_its_deadline(hostile, tmp_path, how):
    """One byte every 0.2 s never trips a 10 s read timeout; the 1.5 s deadline of the pull ends it."""
    h, digest = hostile
    h.attack(digest, how)
    client = oci.Client(h.host, timeout_s=10.0)
    dest = tmp_path / "blob.part"
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match="within the pull's 1.5 s deadline"), client.deadline(1.5):
        client.pull_blob_to("t/hostile", digest, len(DATA), dest)
    took = time.monotonic() - t0
    assert 1.4 <= took < 3.0, took
    assert not dest.exists()
    # the registry behaves again: the same client pulls at once, on fresh connections
    h.lift(digest)
    with client.deadline(10.0):
        client.pull_blob_to("t/hostile", digest, len(DATA), dest)
    assert dest.read_bytes() == DATA


def test_a_deadline_spans_the_requests_of_a_pull_and_ends_with_it(hostile, tmp_path):
    h, digest = hostile
    client = oci.Client(h.host)
    with client.deadline(0.3):
        client.pull_blob_to("t/hostile", digest, len(DATA), tmp_path / "a")
        time.sleep(0.4)  # the pull's time is up: its next request is refused before it starts
        with pytest.raises(Unavailable, match="deadline"):
            client.pull_blob("t/hostile", digest, size=len(DATA))
    time.sleep(0.1)
    assert client.pull_blob("t/hostile", digest, size=len(DATA)) == DATA  # no deadline outside


def test_a_cancelled_deadline_cuts_nothing():
    cut: list[int] = []
    d = transport.Deadline(0.1, lambda: cut.append(1))
    d.cancel()
    time.sleep(0.2)
    assert cut == [] and not d.expired
    d = transport.Deadline(0.05, lambda: cut.append(1))
    time.sleep(0.2)
    assert cut == [1] and d.expired and d.remaining() < 0
