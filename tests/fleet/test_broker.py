"""The fleet's Mosquitto, for real: its config, per-car credentials and ACLs, and what the default loses."""

from __future__ import annotations

import os
import subprocess

import pytest
from helpers import wait_until

from pitlane.artifacts.registry import _die_with_parent, _free_port
from pitlane.errors import UserError
from pitlane.fleet import broker as fb
from pitlane.fleet import protocol as p

from .nuc_support import heartbeat, needs_mosquitto, peer

pytestmark = needs_mosquitto

QUEUED = 1500  # more than Mosquitto's default max_queued_messages (1000)


def test_config_loses_nothing_and_lets_no_one_in_anonymously(tmp_path):
    text = fb.config_text(fb.BrokerConfig(data=tmp_path, host="0.0.0.0"), 1883)
    lines = set(text.splitlines())
    for line in (
        "listener 1883 0.0.0.0",
        "allow_anonymous false",
        "persistence true",
        "autosave_interval 1",
        "max_queued_messages 0",
        "persistent_client_expiration 1y",
        f"password_file {tmp_path.resolve() / 'passwd'}",
        f"acl_file {tmp_path.resolve() / 'acl'}",
        f"persistence_location {tmp_path.resolve() / 'db'}/",
    ):
        assert line in lines, line
    acl = fb.acl_text()
    assert "pattern write pitlane/cars/%u/up" in acl and "pattern read pitlane/cars/%u/ack" in acl
    assert "user pitlane-ingest\ntopic read pitlane/cars/+/up\ntopic write pitlane/cars/+/ack" in acl


def test_passwords_are_hashed_by_mosquitto_passwd_and_checked_here(tmp_path):
    passwd = tmp_path / "passwd"
    password = fb.add_car(passwd, "car-1")
    assert len(password) >= 32 and password not in passwd.read_text()
    hashed = fb.users(passwd)["car-1"]
    assert hashed.startswith("$7$")
    assert fb.verify_password(hashed, password) and not fb.verify_password(hashed, password + "x")
    assert (passwd.stat().st_mode & 0o777) == 0o600
    with pytest.raises(UserError, match="already has credentials"):
        fb.add_car(passwd, "car-1")
    assert fb.add_car(passwd, "car-1", replace=True) != password
    with pytest.raises(UserError, match="not valid"):
        fb.add_car(passwd, "Car_1")
    with pytest.raises(UserError, match="the ingest's own user"):
        fb.add_car(passwd, p.INGEST_USER)
    assert fb.car_names(passwd) == {"car-1"}


def test_anonymous_and_wrong_passwords_are_refused(fleet_broker):
    anonymous = peer(fleet_broker.port, None, None, "anon")
    wrong = peer(fleet_broker.port, "car-1", fleet_broker.passwords["car-2"], "wrong")
    right = peer(fleet_broker.port, "car-1", fleet_broker.passwords["car-1"], "right")
    try:
        assert right.connected.wait(5)
        assert wait_until(lambda: anonymous.connect_reason and wrong.connect_reason, 5)
        assert anonymous.connect_reason[0] == wrong.connect_reason[0] == "Not authorized"
        assert not anonymous.connected.is_set() and not wrong.connected.is_set()
    finally:
        for c in (anonymous, wrong, right):
            c.close()


def test_a_car_publishes_only_under_its_own_topic_and_reads_only_its_acks(fleet_broker):
    """Mosquitto 2.0 answers a publish the ACL denies with a PUBACK and drops the message (2.0.11 also
    closes the connection); separate clients keep each check independent of that."""
    pw = fleet_broker.passwords
    ingest = peer(fleet_broker.port, p.INGEST_USER, pw[p.INGEST_USER], "ingest", subscribe=p.UP_WILDCARD)
    car2 = peer(fleet_broker.port, "car-2", pw["car-2"], "car-2", subscribe="pitlane/cars/+/ack")
    forger = peer(fleet_broker.port, "car-1", pw["car-1"], "car-1-forger")
    car1 = peer(fleet_broker.port, "car-1", pw["car-1"], "car-1")
    ack_writer = peer(fleet_broker.port, "car-2", pw["car-2"], "car-2-writer")
    clients = (ingest, car2, forger, car1, ack_writer)
    try:
        assert all(c.connected.wait(5) for c in clients)
        forger.client.publish(p.up_topic("car-2"), heartbeat("car-2", 1).encode(), qos=1).wait_for_publish(5)
        car1.client.publish(p.up_topic("car-1"), heartbeat("car-1", 1).encode(), qos=1).wait_for_publish(5)
        ingest.client.publish(p.ack_topic("car-1"), p.make_ack("car-1", [1]).encode(), qos=1)
        ingest.client.publish(p.ack_topic("car-2"), p.make_ack("car-2", [7]).encode(), qos=1)
        # nor may a car write an ack, not even on its own ack topic
        ack_writer.client.publish(p.ack_topic("car-2"), p.make_ack("car-2", [8]).encode(), qos=1)
        assert wait_until(lambda: ingest.received and car2.received, 5)
        assert wait_until(lambda: False, 0.7) is False  # give a stray delivery time to arrive
        assert [t for t, _ in ingest.received] == ["pitlane/cars/car-1/up"]
        assert car2.received == [("pitlane/cars/car-2/ack", p.make_ack("car-2", [7]).encode())]
    finally:
        for c in clients:
            c.close()


def test_a_car_added_while_the_broker_runs_can_connect_within_two_seconds(fleet_broker):
    password = fb.add_car(fleet_broker.data / fb.PASSWD_NAME, "car-3")
    assert wait_until(lambda: _can_connect(fleet_broker.port, "car-3", password), 5)


def _can_connect(port: int, user: str, password: str) -> bool:
    c = peer(port, user, password, f"probe-{user}")
    try:
        return c.connected.wait(1)
    finally:
        c.close()


def _queue_while_subscriber_offline(port: int, sub_user, sub_pw, car_pw, n: int) -> tuple[int, int]:
    """A persistent subscriber goes offline, a car publishes n QoS 1 records; returns (PUBACKs the car got,
    records the subscriber gets when it comes back)."""
    sub = peer(port, sub_user, sub_pw, "sub", subscribe=p.UP_WILDCARD, persistent=True)
    assert sub.connected.wait(5)
    assert wait_until(lambda: False, 0.3) is False  # the SUBACK
    sub.close()
    car = peer(port, "car-1" if car_pw else None, car_pw, "car-1")
    assert car.connected.wait(5)
    infos = [
        car.client.publish(p.up_topic("car-1"), heartbeat("car-1", i + 1).encode(), qos=1) for i in range(n)
    ]
    for info in infos:
        info.wait_for_publish(10)
    acked = len(car.acked_mids)
    car.close()
    back = peer(port, sub_user, sub_pw, "sub", subscribe=p.UP_WILDCARD, persistent=True)
    try:
        assert back.connected.wait(5)
        wait_until(lambda: len(back.received) >= n, 10)
        assert wait_until(lambda: False, 0.5) is False
        return acked, len(back.received)
    finally:
        back.close()


@pytest.mark.slow
def test_default_mosquitto_drops_past_1000_queued_messages_ours_keeps_them(fleet_broker, tmp_path):
    """What default Mosquitto loses: every publish was acknowledged, a third never arrives."""
    port = _free_port("127.0.0.1")
    conf = tmp_path / "default.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")  # everything else: the defaults
    proc = subprocess.Popen(
        [fb.BINARY, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if os.name == "posix" else None,
    )
    try:
        assert wait_until(lambda: fb.port_open("127.0.0.1", port), 5)
        acked, received = _queue_while_subscriber_offline(port, None, None, None, QUEUED)
    finally:
        proc.terminate()
        proc.wait(5)
    assert acked == QUEUED and received == 1000  # silently dropped: QUEUED - 1000 lost
    pw = fleet_broker.passwords
    acked, received = _queue_while_subscriber_offline(
        fleet_broker.port, p.INGEST_USER, pw[p.INGEST_USER], pw["car-1"], QUEUED
    )
    assert acked == received == QUEUED


@pytest.mark.slow
def test_queued_messages_survive_a_broker_sigkill_after_one_autosave(fleet_broker):
    pw = fleet_broker.passwords
    sub = peer(
        fleet_broker.port, p.INGEST_USER, pw[p.INGEST_USER], "sub", subscribe=p.UP_WILDCARD, persistent=True
    )
    assert sub.connected.wait(5) and wait_until(lambda: False, 0.3) is False
    sub.close()
    car = peer(fleet_broker.port, "car-1", pw["car-1"], "car-1")
    assert car.connected.wait(5)
    for i in range(50):
        car.client.publish(p.up_topic("car-1"), heartbeat("car-1", i + 1).encode(), qos=1).wait_for_publish(5)
    car.close()
    assert wait_until(lambda: False, 2.5) is False  # > autosave_interval
    fleet_broker.broker.kill()
    fleet_broker.broker.config = fb.BrokerConfig(data=fleet_broker.data, port=fleet_broker.port)
    fleet_broker.broker.start()
    back = peer(
        fleet_broker.port, p.INGEST_USER, pw[p.INGEST_USER], "sub", subscribe=p.UP_WILDCARD, persistent=True
    )
    try:
        assert wait_until(lambda: len(back.received) >= 50, 10)
        seqs = [p.parse_record(payload).seq for _, payload in back.received]
        assert sorted(set(seqs)) == list(range(1, 51))
    finally:
        back.close()
