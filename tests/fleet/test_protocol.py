"""The fleet's message schema: what one side builds the other parses; every bad message is one clear line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pitlane.fleet import protocol as p

BOOT = "0123456789abcdef0123456789abcdef"


def heartbeat(name: str = "car-1", **values) -> dict:
    defaults = {
        "profile": "twin",
        "pitlane_version": "0.1.0",
        "model": {
            "running": {"digest": "sha256:" + "a" * 64, "serial": 3, "state": "running"},
            "desired": None,
            "differs_since": None,
        },
        "loop_hz": 19.8,
        "pilot_ms": {"p50": 2.0, "p99": 4.5},
        "watchdog_stops": {"stale_frame": 1},
        "twin": {"laps": 2, "cte_mean": 0.1, "cte_max": 0.4},
        "disk_free_mb": 1200.5,
        "backlog": {"records": 3, "tubs": 1, "tub_records": 1000},
        "drift": {"score": 0.4, "frames": 120, "baseline": "bundle"},
        "mode": "local",
    }
    defaults.update(values)
    return p.heartbeat_body(name, **defaults)


def record(kind: str = p.HEARTBEAT, body: dict | None = None, **kw) -> p.Record:
    fields: dict[str, Any] = dict(
        car="car-1", seq=7, kind=kind, t=1_700_000_000.25, boot=BOOT, body=body or heartbeat()
    )
    fields.update(kw)
    return p.Record(**fields)


@pytest.mark.parametrize("name", ["a", "car-1", "0x", "a" * 63, "pi-car-07"])
def test_valid_car_names(name):
    assert p.check_car_name(name) == name
    assert p.parse_topic(p.up_topic(name)) == (name, "up")
    assert p.parse_topic(p.ack_topic(name)) == (name, "ack")


@pytest.mark.parametrize("name", ["", "-a", "Car", "a" * 64, "a_b", "a/b", "+", "#", None, 5, "a b"])
def test_invalid_car_names_say_the_rule(name):
    with pytest.raises(p.ProtocolError, match="lower-case letters, digits and '-'"):
        p.check_car_name(name)


@pytest.mark.parametrize(
    "topic",
    ["pitlane/cars/a/down", "pitlane/cars/a", "other/cars/a/up", "pitlane/cars/A/up", "pitlane/cars/+/up"],
)
def test_other_topics_are_refused(topic):
    with pytest.raises(p.ProtocolError):
        p.parse_topic(topic)


def test_wildcards_match_the_topics():
    assert p.UP_WILDCARD == "pitlane/cars/+/up" and p.ACK_WILDCARD == "pitlane/cars/+/ack"


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (p.HEARTBEAT, heartbeat()),
        (p.HEARTBEAT, p.heartbeat_body("car-1")),  # everything unknown: all null
        (p.EVENT, {"type": "model_swap", "detail": {"to": "x"}}),
        (p.EVENT, {"type": "something_new", "detail": {}}),  # event types are open-ended
        (
            p.TUB,
            {
                "ref": "nuc:5000/data/car-1@sha256:" + "b" * 64,
                "session": "tub_3_24-01-01",
                "records": 1000,
                "start": 1.0,
                "end": 2.0,
                "model": None,
            },
        ),
    ],
)
def test_a_record_round_trips(kind, body):
    r = record(kind, body)
    payload = r.encode()
    assert json.loads(payload)["v"] == 1
    assert p.parse_record(payload, "pitlane/cars/car-1/up") == r


def test_the_payload_is_deterministic_compact_json():
    assert record().encode() == record().encode()
    assert b" " not in record(p.EVENT, {"type": "x", "detail": {}}).encode()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(seq=0), "seq must be a positive integer"),
        (dict(seq=True), "seq must be a positive integer"),
        (dict(seq=1.0), "seq must be a positive integer"),
        (dict(kind="log"), "kind must be heartbeat | event | tub"),
        (dict(t=float("nan")), "t must be a unix time"),
        (dict(t="now"), "t must be a unix time"),
        (dict(boot="xyz"), "boot must be 32 lower-case hex digits"),
        (dict(car="Bad"), "car name 'Bad' is not valid"),
        (dict(body=heartbeat(name="other")), "heartbeat.name must be the record's car 'car-1'"),
        (dict(body=heartbeat(loop_hz="fast")), "heartbeat.loop_hz must be a finite number or null"),
        (dict(body=heartbeat(profile="laptop")), "heartbeat.profile must be twin, pi or null"),
        (dict(body=heartbeat(watchdog_stops={"x": -1})), r"heartbeat.watchdog_stops\['x'\] must be a count"),
        (dict(body=heartbeat(backlog={"records": 1})), "heartbeat.backlog.tubs must be a count"),
        (dict(body=heartbeat(drift={"score": 1, "frames": 2, "baseline": "x"})), "drift.baseline"),
        (dict(body={"name": "car-1"}), "heartbeat lacks profile, image"),
    ],
)
def test_bad_records_are_refused_with_the_reason(change, message):
    with pytest.raises(p.ProtocolError, match=message):
        record(**change).encode()


def test_bad_event_and_tub_bodies():
    with pytest.raises(p.ProtocolError, match="event.type must be a lower-case word"):
        record(p.EVENT, {"type": "Model Swap", "detail": {}}).encode()
    with pytest.raises(p.ProtocolError, match="event.detail must be an object"):
        record(p.EVENT, {"type": "x", "detail": []}).encode()
    with pytest.raises(p.ProtocolError, match="tub record lacks"):
        record(p.TUB, {"ref": "x"}).encode()
    body = {
        "ref": "nuc:5000/data/car-1:tag",
        "session": "s",
        "records": 1,
        "start": 1,
        "end": 2,
        "model": None,
    }
    with pytest.raises(p.ProtocolError, match="tub.ref must be REGISTRY/REPO@sha256"):
        record(p.TUB, body).encode()


def test_a_record_over_the_size_limit_is_refused_at_the_car():
    big = record(p.EVENT, {"type": "x", "detail": {"blob": "x" * p.MAX_PAYLOAD}})
    with pytest.raises(p.ProtocolError, match="over the 65536 byte limit"):
        big.encode()
    with pytest.raises(p.ProtocolError, match="over the 65536 byte limit"):
        p.parse_record(b" " * (p.MAX_PAYLOAD + 1))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{", "not UTF-8 JSON"),
        (b"[]", "not a JSON object"),
        (b'{"v": 2}', "v must be 1"),
        (b'{"v": 1, "car": "a"}', "record lacks seq, kind, t, boot, body"),
        (
            b'{"v":1,"car":"car-1","seq":1,"kind":"event","t":NaN,"boot":"x","body":{}}',
            "NaN is not a JSON number",
        ),
    ],
)
def test_garbage_payloads_are_one_clear_line(payload, message):
    with pytest.raises(p.ProtocolError, match=message):
        p.parse_record(payload)


def test_a_forged_car_name_is_refused_by_topic():
    payload = record().encode()
    with pytest.raises(p.ProtocolError, match="forged name"):
        p.parse_record(payload, "pitlane/cars/car-2/up")
    with pytest.raises(p.ProtocolError, match="not on an up topic"):
        p.parse_record(payload, "pitlane/cars/car-1/ack")


def test_seq_ranges_merge_and_sort():
    assert p.seq_ranges([]) == []
    assert p.seq_ranges([5, 1, 2, 3, 3, 9, 10]) == [[1, 3], [5, 5], [9, 10]]


def test_an_ack_round_trips_and_answers_membership():
    ack = p.make_ack("car-1", [4, 1, 2, 3, 8])
    assert ack.seqs == ((1, 4), (8, 8))
    assert ack.count() == 5
    assert 3 in ack and 8 in ack and 5 not in ack and True not in ack
    back = p.parse_ack(ack.encode(), ack.topic)
    assert back == ack and ack.topic == "pitlane/cars/car-1/ack"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"v":1,"car":"car-1","seqs":[[3,2]]}', "first <= last"),
        (b'{"v":1,"car":"car-1","seqs":[[0,2]]}', r"seqs\[0\]\[0\] must be a positive integer"),
        (b'{"v":1,"car":"car-1","seqs":[1,2]}', r"seqs\[0\] must be a \[first, last\] pair"),
        (b'{"v":1,"car":"car-1","seqs":{}}', "seqs must be a list"),
        (b'{"v":1,"car":"Car","seqs":[]}', "car name"),
    ],
)
def test_bad_acks_are_refused(payload, message):
    with pytest.raises(p.ProtocolError, match=message):
        p.parse_ack(payload)


def test_an_ack_for_another_car_on_this_topic_is_refused():
    with pytest.raises(p.ProtocolError, match="arrived on"):
        p.parse_ack(p.make_ack("car-2", [1]).encode(), "pitlane/cars/car-1/ack")


def test_heartbeat_body_names_unknown_keys():
    with pytest.raises(p.ProtocolError, match="no key"):
        p.heartbeat_body("car-1", speed=3)
    body = p.heartbeat_body("car-1", loop_hz=20.0)
    assert set(body) == set(p.HEARTBEAT_KEYS) and body["loop_hz"] == 20.0 and body["drift"] is None
