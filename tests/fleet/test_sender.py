"""The sender against a real Mosquitto: every spooled record reaches the ack responder and leaves the spool
exactly once in the responder's store (0 lost, 0 duplicated) across broker SIGKILLs, a car process
SIGKILLed mid-spool, a link cut by a relay, a corrupt spool file and a broker that is down or refuses."""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pitlane.artifacts.relay import Relay
from pitlane.fleet import protocol
from pitlane.fleet.sender import Sender, SenderParams
from pitlane.fleet.spool import Spool

ROOT = Path(__file__).resolve().parents[2]
FAST = dict(resend_s=1.0, backoff_s=0.1, max_backoff_s=0.5, keepalive_s=2)


def event(n: int) -> dict:
    return {"type": "test", "detail": {"n": n}}


def sender_for(spool: Spool, address: str, **kw) -> Sender:
    params = SenderParams.from_broker(address, **{**FAST, **kw})
    return Sender(spool, params).start()


def numbers(responder) -> dict[int, list[int]]:
    """n -> the seqs it was stored under (exactly one each, or a record was spooled twice)."""
    out: dict[int, list[int]] = {}
    for seq, record in responder.stored().items():
        out.setdefault(record.body["detail"]["n"], []).append(seq)
    return out


def assert_exactly_once(responder, expected: set[int], allowed: set[int] | None = None) -> None:
    got = numbers(responder)
    assert responder.conflicts() == []  # no seq ever carried two different records
    assert [n for n, seqs in got.items() if len(seqs) > 1] == []  # no record stored twice
    assert expected - set(got) == set()  # nothing lost
    assert set(got) <= (allowed if allowed is not None else expected)


def test_params_from_broker_text():
    assert SenderParams.from_broker("nuc.local:1884").port == 1884
    assert SenderParams.from_broker("nuc.local").port == 1883
    with pytest.raises(protocol.ProtocolError, match="HOST:PORT"):
        SenderParams.from_broker("nuc:x")


def test_records_arrive_in_order_and_leave_the_spool(tmp_path, broker, responder, wait):
    spool = Spool(tmp_path / "spool.db", "car-1")
    for n in range(150):  # more than the window
        spool.append(protocol.EVENT, event(n))
    sender = sender_for(spool, broker.address, window=20)
    try:
        wait(lambda: spool.count() == 0, what="the spool to drain")
    finally:
        sender.stop()
    assert_exactly_once(responder, set(range(150)))
    seqs = [seq for car, seq in responder.order]
    assert seqs == sorted(seqs)  # in seq order
    assert sender.stats.acked == 150 and sender.stats.connects == 1


def test_the_spool_keeps_everything_while_the_broker_is_down(
    tmp_path, caplog, make_broker, make_responder, wait
):
    broker = make_broker(start=False)
    spool = Spool(tmp_path / "spool.db", "car-1")
    with caplog.at_level(logging.WARNING, logger="pitlane.fleet.sender"):
        sender = sender_for(spool, broker.address)
        try:
            for n in range(20):
                spool.append(protocol.EVENT, event(n))
                time.sleep(0.05)
            assert spool.count() == 20
            lines = [r.getMessage() for r in caplog.records]
            assert len(lines) == 1 and "cannot reach broker" in lines[0] and "stay spooled" in lines[0]
            broker.start()
            responder = make_responder(broker)
            wait(lambda: spool.count() == 0, what="the spool to drain")
        finally:
            sender.stop()
    assert_exactly_once(responder, set(range(20)))


def test_broker_sigkill_and_restart_lose_and_duplicate_nothing(tmp_path, broker, responder, wait):
    spool = Spool(tmp_path / "spool.db", "car-1")
    sender = sender_for(spool, broker.address)
    try:
        n = 0
        for _ in range(3):
            for _ in range(60):
                spool.append(protocol.EVENT, event(n))
                sender.poke()
                n += 1
                time.sleep(0.005)
            broker.kill()  # whatever it queued since its last autosave is gone; its PUBACKs meant nothing
            for _ in range(20):
                spool.append(protocol.EVENT, event(n))  # the car keeps spooling while the broker is gone
                n += 1
            broker.start()
        wait(lambda: spool.count() == 0, timeout_s=60, what="the spool to drain")
    finally:
        sender.stop()
    assert_exactly_once(responder, set(range(n)))
    assert sender.stats.connects >= 4


def test_a_link_cut_by_a_relay_loses_and_duplicates_nothing(tmp_path, broker, responder, wait):
    relay = Relay(broker.address)
    spool = Spool(tmp_path / "spool.db", "car-1")
    sender = sender_for(spool, relay.host)
    rng = random.Random(0)
    try:
        n = 0
        for _ in range(5):
            for _ in range(rng.randint(20, 60)):
                spool.append(protocol.EVENT, event(n))
                sender.poke()
                n += 1
                time.sleep(0.003)
            relay.reset(cut_after=rng.randint(0, 200))  # the next bytes towards the car cut every connection
            time.sleep(0.3)
            relay.reset(cut_after=None)
        wait(lambda: spool.count() == 0, timeout_s=60, what="the spool to drain")
    finally:
        sender.stop()
        relay.close()
    assert_exactly_once(responder, set(range(n)))
    assert sender.stats.connects >= 2


def test_acks_the_car_missed_arrive_through_its_persistent_session(tmp_path, broker, responder, wait):
    spool = Spool(tmp_path / "spool.db", "car-1")
    sender = sender_for(spool, broker.address, resend_s=30.0)
    spool.append(protocol.EVENT, event(0))
    wait(lambda: spool.count() == 0, what="the first record's ack")
    responder.acking = False  # the ingest stores, but answers only once the car has gone
    seq = spool.append(protocol.EVENT, event(1)).seq
    sender.poke()
    wait(lambda: len(responder.stored()) == 2, what="delivery")
    sender.stop()
    ack = protocol.make_ack("car-1", [seq])
    responder.client.publish(ack.topic, ack.encode(), qos=1).wait_for_publish(5)
    assert spool.count() == 1
    sender = sender_for(spool, broker.address, resend_s=30.0)
    try:  # the responder acks nothing now: only the ack kept in the car's session can empty the spool
        wait(lambda: spool.count() == 0, what="the ack kept by the broker")
    finally:
        sender.stop()
    assert_exactly_once(responder, {0, 1})


def middle_records_page(path):
    """The middle leaf page of the records table, and the page size: where the damage is chosen to land.

    Aiming at an offset instead made the loss depend on how the first drain's deletes had laid out the file."""
    db = sqlite3.connect(str(path))
    try:
        leaves = [
            n for (n,) in db.execute("SELECT pageno FROM dbstat WHERE name='records' AND pagetype='leaf'")
        ]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    assert len(leaves) > 10, leaves
    return sorted(leaves)[len(leaves) // 2], page_size


@pytest.mark.slow
def test_a_corrupt_spool_file_is_recovered_and_sent_without_reusing_a_seq(tmp_path, broker, responder, wait):
    path = tmp_path / "spool.db"
    spool = Spool(path, "car-1")
    for n in range(50):
        spool.append(protocol.EVENT, event(n))
    sender = sender_for(spool, broker.address)
    wait(lambda: spool.count() == 0, what="the first drain")
    sender.stop()
    for n in range(50, 650):
        spool.append(protocol.EVENT, event(n))
    spool.close()
    page, page_size = middle_records_page(path)
    with open(path, "r+b") as f:  # a card that lost power mid-write: a page of garbage
        f.seek((page - 1) * page_size)
        f.write(os.urandom(page_size))
    spool = Spool(path, "car-1")
    assert spool.recovered_from is not None
    salvaged = {protocol.parse_record(p.payload).body["detail"]["n"] for p in spool.pending(5000)}
    assert 500 < len(salvaged) < 600  # one leaf page of records lost, the rest salvaged
    spool.append(protocol.EVENT, event(5000))
    sender = sender_for(spool, broker.address)
    try:
        wait(lambda: spool.count() == 0, timeout_s=60, what="the spool to drain")
    finally:
        sender.stop()
    # what was salvaged arrives once; what the damaged page held is gone (and named by the moved-aside file)
    assert_exactly_once(responder, set(range(50)) | salvaged | {5000})


@pytest.mark.slow
def test_a_car_process_sigkilled_mid_spool_loses_and_duplicates_nothing(tmp_path, broker, responder, wait):
    path = tmp_path / "spool.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    script = str(Path(__file__).with_name("car_process.py"))
    rng = random.Random(1)
    committed: set[int] = set()
    attempted: set[int] = set()
    first = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, script, str(path), broker.address, str(first), "100000", "0.002"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        stop_after = rng.randint(10, 300)
        assert proc.stdout is not None
        for i, line in enumerate(proc.stdout):
            committed.add(int(line.split()[0]))
            if i >= stop_after:
                break
        proc.kill()  # SIGKILL, in the middle of spooling and sending
        proc.wait()
        attempted |= set(range(first, first + stop_after + 50))  # at most a few past the last printed line
        first += 100_000
    drained = subprocess.run(
        [sys.executable, script, str(path), broker.address, "0", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert drained.stdout.strip() == "drained", drained.stderr
    wait(lambda: set(numbers(responder)) >= committed, what="every committed record")
    assert_exactly_once(responder, committed, allowed=attempted)


def test_wrong_credentials_are_one_line_and_keep_everything(
    tmp_path, caplog, make_broker, make_responder, wait
):
    broker = make_broker(users={"car-1": "right", protocol.INGEST_USER: "ingest"})
    spool = Spool(tmp_path / "spool.db", "car-1")
    spool.append(protocol.EVENT, event(0))
    with caplog.at_level(logging.WARNING, logger="pitlane.fleet.sender"):
        sender = sender_for(spool, broker.address, password="wrong")
        wait(lambda: "refused" in sender.stats.last_error, what="the refusal")
        time.sleep(0.5)
        sender.stop()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "refused car car-1" in lines[0] and "FLEET_PASSWORD" in lines[0]
    assert spool.count() == 1
    responder = make_responder(broker, password="ingest")
    sender = sender_for(spool, broker.address, password="right")
    try:
        wait(lambda: spool.count() == 0, what="delivery with the right password")
    finally:
        sender.stop()
    assert_exactly_once(responder, {0})


def test_the_acl_keeps_a_car_to_its_own_topic(tmp_path, make_broker, make_responder, wait):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    users = {"car-1": "one", "car-2": "two", protocol.INGEST_USER: "ingest"}
    broker = make_broker(users=users)
    responder = make_responder(broker, password="ingest")
    spool = Spool(tmp_path / "spool.db", "car-1")
    forged = spool.append(protocol.EVENT, event(0)).encode()
    car2 = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="car-2", protocol=mqtt.MQTTv5)
    car2.username_pw_set("car-2", "two")
    car2.connect("127.0.0.1", broker.port)
    car2.loop_start()
    try:
        wait(car2.is_connected, what="car-2's connection")
        car2.publish(protocol.up_topic("car-1"), forged, qos=1).wait_for_publish(5)  # the ACL drops it
        wait(
            car2.is_connected, what="car-2's connection"
        )  # a loaded machine may have cut it: paho reconnects
        car2.publish(protocol.up_topic("car-2"), forged, qos=1).wait_for_publish(5)  # the ingest refuses it
        wait(lambda: responder.refused, what="the forged record's refusal")
    finally:
        car2.disconnect()
        car2.loop_stop()
    assert "forged name" in responder.refused[0] and responder.stored() == {}
    sender = sender_for(spool, broker.address, password="one")
    wait(lambda: spool.count() == 0, what="delivery by the real car-1")
    sender.stop()
    assert_exactly_once(responder, {0})


def test_appending_never_waits_for_the_network(tmp_path):
    """The part spools from its own thread; even so, an append with the broker unreachable is fast."""
    spool = Spool(tmp_path / "spool.db", "car-1")
    relay = Relay("127.0.0.1:9")  # nothing listens there: every connection dies at once
    sender = sender_for(spool, relay.host)
    times = []
    try:
        for n in range(30):
            t0 = time.perf_counter()
            spool.append(protocol.EVENT, event(n))
            sender.poke()
            times.append(time.perf_counter() - t0)
    finally:
        sender.stop()
        relay.close()
    assert spool.count() == 30
    assert sorted(times)[len(times) // 2] < 0.05
    assert not any(t.name.startswith("fleet-sender") and t.is_alive() for t in threading.enumerate())
