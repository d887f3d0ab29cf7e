"""The ingest against a real Mosquitto and a real registry: each record stored once, acknowledged only after
the commit; every kind of bad message one counted refusal, never acknowledged, and nothing stops."""

from __future__ import annotations

import logging
import shutil
import time

import pytest
from helpers import wait_until

from pitlane.artifacts import oci
from pitlane.artifacts.registry import _free_port
from pitlane.fleet import broker as fb
from pitlane.fleet import protocol as p
from pitlane.fleet.ingest import Ingest, IngestConfig, Message
from pitlane.fleet.ratelog import RateLimitedLog
from pitlane.fleet.store import Store

from .nuc_support import event, heartbeat, needs_mosquitto, peer, push_tub_bundle, tub_record

pytestmark = needs_mosquitto


def message(car: str, record: p.Record) -> Message:
    return Message(p.up_topic(car), record.encode(), 0, 0, time.time())


def start_ingest(fleet, store, registry: str | None, passwd=None) -> Ingest:
    cfg = IngestConfig(
        broker=fleet.host,
        password=fleet.passwords[p.INGEST_USER],
        passwd=passwd or fleet.data / fb.PASSWD_NAME,
        registry=registry,
    )
    ingest = Ingest(cfg, store).start()
    assert ingest.wait_connected(5)
    return ingest


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "fleet.db")
    yield s
    s.close()


class Car:
    """Plays a car on the wire: publishes records on its own topic and collects the acks it is sent."""

    def __init__(self, fleet, name: str, password: str | None = None) -> None:
        self.name = name
        self.peer = peer(
            fleet.port, name, password or fleet.passwords[name], name, subscribe=p.ack_topic(name)
        )
        assert self.peer.connected.wait(5)
        time.sleep(0.2)  # the SUBACK

    def send(self, *records: p.Record | bytes) -> None:
        for r in records:
            payload = r if isinstance(r, bytes) else r.encode()
            self.peer.client.publish(p.up_topic(self.name), payload, qos=1).wait_for_publish(5)

    def acked(self) -> set[int]:
        with self.peer.lock:
            acks = [p.parse_ack(payload, topic) for topic, payload in self.peer.received]
        return {s for a in acks for lo, hi in a.seqs for s in range(lo, hi + 1)}

    def close(self) -> None:
        self.peer.close()


def test_records_are_stored_once_and_acked_after_the_commit(fleet_broker, store):
    ingest = start_ingest(fleet_broker, store, None)
    car = Car(fleet_broker, "car-1")
    try:
        car.send(*(heartbeat("car-1", s) for s in range(1, 6)), event("car-1", 6, "model_swap", to="x"))
        assert wait_until(lambda: car.acked() == set(range(1, 7)), 5)
        assert store.counts("car-1") == {"heartbeat": 5, "event": 1}
        car.send(heartbeat("car-1", 3), heartbeat("car-1", 3))  # a resend after a lost ack, twice
        assert wait_until(lambda: ingest.stats["acked"] >= 8, 5)
        assert store.seqs("car-1") == [1, 2, 3, 4, 5, 6]  # acked again, not stored twice
        (row,) = store.cars()
        assert row["name"] == "car-1" and row["heartbeat_seq"] == 5 and row["event"]["type"] == "model_swap"
        assert len(store.history("car-1", 0)) == 5
        assert not ingest.counts
    finally:
        car.close()
        ingest.stop()


def test_bad_messages_are_counted_never_acked_and_nothing_stops(fleet_broker, store, caplog):
    ingest = start_ingest(fleet_broker, store, None)
    car = Car(fleet_broker, "car-1")
    try:
        good_then_forged = heartbeat("car-2", 2)  # car-1 claiming to be car-2 on its own topic
        car.send(
            b"{not json",
            b'{"v": 1, "car": "car-1", "seq": 3}',  # lacks kind, t, boot, body
            b"x" * (p.MAX_PAYLOAD + 1),
            good_then_forged,
            heartbeat("car-1", 9),
        )
        assert wait_until(lambda: car.acked() == {9}, 5)
        assert wait_until(lambda: sum(ingest.counts.values()) == 4, 5)
        assert ingest.counts == {"malformed": 2, "oversized": 1, "forged": 1}
        assert store.seqs("car-1") == [9] and store.seqs("car-2") == []
        assert {r: v["count"] for r, v in store.refusals().items()} == dict(ingest.counts)
        assert "forged name" in caplog.text or "forged" in caplog.text
    finally:
        car.close()
        ingest.stop()


def test_an_unknown_cars_records_wait_until_it_is_added(fleet_broker, store, tmp_path):
    """The ingest knows cars by the password file it is given (a cluster mounts it from a Secret, which may
    lag the broker's): records of a car not in it are not acked; added, the car's resend is stored."""
    passwd = tmp_path / "ingest-passwd"
    shutil.copy(fleet_broker.data / fb.PASSWD_NAME, passwd)
    fb.set_password(passwd, "car-2", "not this one")
    lines = [ln for ln in passwd.read_text().splitlines() if not ln.startswith("car-2:")]
    passwd.write_text("\n".join(lines) + "\n")
    ingest = start_ingest(fleet_broker, store, None, passwd=passwd)
    car = Car(fleet_broker, "car-2")
    try:
        car.send(heartbeat("car-2", 1))
        assert wait_until(lambda: ingest.counts["unknown_car"] == 1, 5)
        assert not car.acked() and store.seqs("car-2") == []
        shutil.copy(fleet_broker.data / fb.PASSWD_NAME, passwd)
        car.send(heartbeat("car-2", 1))  # the car's resend
        assert wait_until(lambda: car.acked() == {1}, 5)
        assert store.seqs("car-2") == [1]
    finally:
        car.close()
        ingest.stop()


def test_a_car_clock_off_by_more_than_5_s_is_flagged_and_both_times_kept(fleet_broker, store):
    ingest = start_ingest(fleet_broker, store, None)
    car = Car(fleet_broker, "car-1")
    try:
        late = time.time() - 60
        backlog = {"records": 5000, "tubs": 0, "tub_records": 0}
        car.send(heartbeat("car-1", 1, t=late - 3600, backlog=backlog))  # old, sent from a backlog: not skew
        assert wait_until(lambda: car.acked() == {1}, 5)
        assert not ingest.counts["clock_skew"] and store.cars()[0]["clock_offset"] is None
        # the first heartbeats of an outage (nothing waited before them) arrive behind newer records: not skew
        ingest.process(
            [
                message("car-1", heartbeat("car-1", 2, t=late - 600)),
                message("car-1", heartbeat("car-1", 3, t=late - 1, backlog=backlog)),
            ]
        )
        assert not ingest.counts["clock_skew"] and store.cars()[0]["clock_offset"] is None
        car.send(heartbeat("car-1", 4, t=late))  # live (no backlog) and a minute behind
        assert wait_until(lambda: car.acked() == {1, 2, 3, 4}, 5)
        assert wait_until(lambda: ingest.counts["clock_skew"] == 1, 5)
        row = store.cars()[0]
        assert 59 < row["clock_offset"] < 65 and row["last_t"] == pytest.approx(late)
        assert row["last_seen"] > late + 59
    finally:
        car.close()
        ingest.stop()


def test_what_arrives_while_the_ingest_is_down_waits_in_its_session(fleet_broker, store):
    ingest = start_ingest(fleet_broker, store, None)
    ingest.stop()
    car = Car(fleet_broker, "car-1")
    try:
        car.send(*(heartbeat("car-1", s) for s in range(1, 101)))
        assert not car.acked()
        ingest = start_ingest(fleet_broker, store, None)
        assert wait_until(lambda: car.acked() == set(range(1, 101)), 10)
        assert store.seqs("car-1") == list(range(1, 101))
    finally:
        car.close()
        ingest.stop()


def test_tub_records_are_checked_in_the_registry_before_they_are_acked(fleet_broker, store, registry):
    client = oci.Client(registry.host)
    good = push_tub_bundle(client, "car-1", records=42)
    other_cars = push_tub_bundle(client, "car-2")
    lying = push_tub_bundle(client, "car-1", records=7, config_car="car-2")
    missing = good.rsplit("@", 1)[0] + "@sha256:" + "0" * 64
    ingest = start_ingest(fleet_broker, store, registry.host)
    car = Car(fleet_broker, "car-1")
    try:
        car.send(
            tub_record("car-1", 1, good.replace(registry.host, "nuc.example:5001"), 42),  # as the car sees it
            tub_record("car-1", 2, other_cars),
            tub_record("car-1", 3, lying),
            tub_record("car-1", 4, missing),
        )
        assert wait_until(lambda: ingest.counts["tub_refused"] == 3 and car.acked() == {1}, 10)
        (tub,) = store.tubs()
        assert tub["ref"] == good and tub["records"] == 42 and tub["config"]["records"] == 42
        assert tub["sent_ref"].startswith("nuc.example:5001/data/car-1@sha256:")
        assert store.tubs(car="car-2") == []
        car.send(
            tub_record("car-1", 5, good, 42)
        )  # the same bundle again (a car that crashed after spooling)
        assert wait_until(lambda: car.acked() == {1, 5}, 10)
        assert [t["seq"] for t in store.tubs()] == [1]  # indexed once
    finally:
        car.close()
        ingest.stop()


def test_a_tub_record_waits_while_the_registry_is_down(fleet_broker, store, registry):
    ref = push_tub_bundle(oci.Client(registry.host), "car-1", records=5)
    down = f"127.0.0.1:{_free_port('127.0.0.1')}"
    ingest = start_ingest(fleet_broker, store, down)
    car = Car(fleet_broker, "car-1")
    try:
        car.send(tub_record("car-1", 1, ref, 5), heartbeat("car-1", 2))
        assert wait_until(lambda: car.acked() == {2}, 10)
        assert ingest.counts == {"registry_unavailable": 1} and store.tubs() == []
        ingest.stop()
        ingest = start_ingest(fleet_broker, store, registry.host)
        car.send(tub_record("car-1", 1, ref, 5))  # the car's resend, registry back
        assert wait_until(lambda: car.acked() == {1, 2}, 10)
        assert [t["records"] for t in store.tubs()] == [5]
    finally:
        car.close()
        ingest.stop()


def test_refusal_log_lines_are_rate_limited(caplog):
    limited = RateLimitedLog(logging.getLogger("test"), every_s=60)
    for i in range(50):
        limited.warn("forged", f"forged {i}")
    limited.warn("malformed", "malformed 0")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["forged 0", "malformed 0"]
    limited._last["forged"] = 0.0
    limited.warn("forged", "forged again")
    assert caplog.records[-1].getMessage() == "forged again (and 49 more like it since the last line)"
