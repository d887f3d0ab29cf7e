"""The fleet's messages: topics, records (car -> NUC) and acks (NUC -> car), built and checked here only.

Car and NUC both import this module (it is pure: no I/O, no MQTT), so a message one side builds is exactly
what the other side parses. A record travels on `pitlane/cars/<NAME>/up`:

    {"v": 1, "car": NAME, "seq": N, "kind": "heartbeat"|"event"|"tub", "t": <car clock, unix s>,
     "boot": <uuid4 hex of the spool>, "body": {...}}

and the ingest answers on `pitlane/cars/<NAME>/ack` with {"v": 1, "car": NAME, "seqs": [[a, b], ...]}:
closed ranges of the seqs it stored durably. `seq` grows strictly per car and is never reused, so
(car, seq) identifies a record across reconnects, restarts and crashes: the ingest keeps each once, the car
deletes it only when acked. Every check fails with one `ProtocolError` line naming what is wrong.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pitlane.errors import UserError

VERSION = 1
TOPIC_ROOT = "pitlane/cars"
UP, ACK = "up", "ack"
UP_WILDCARD = f"{TOPIC_ROOT}/+/{UP}"  # what the ingest subscribes to
ACK_WILDCARD = f"{TOPIC_ROOT}/+/{ACK}"
INGEST_USER = "pitlane-ingest"  # the NUC ingest's MQTT user (reads every car's up, writes every ack)
QOS = 1
MAX_PAYLOAD = 64 * 1024  # [B] largest record or ack; a larger one is refused where it is built
HEARTBEAT, EVENT, TUB = "heartbeat", "event", "tub"
KINDS: tuple[str, ...] = (HEARTBEAT, EVENT, TUB)
PROFILES: tuple[str, ...] = ("twin", "pi")
EVENT_TYPES: tuple[str, ...] = ("model_swap", "watchdog_stop", "rollback", "refused")  # known; others allowed
DRIFT_BASELINES: tuple[str, ...] = ("bundle", "none")
TUB_MEDIA_TYPE = "application/vnd.pitlane.tub.v1"  # a data bundle's artifactType (see tubbundle)
CAR_NAME_RULE = "lower-case letters, digits and '-', starting with a letter or digit, at most 63 characters"

_CAR_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_BOOT = re.compile(r"^[0-9a-f]{32}$")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_MAX_SEQ = (1 << 63) - 1  # SQLite's largest INTEGER
HEARTBEAT_KEYS: tuple[str, ...] = (
    "name",
    "profile",
    "image",
    "pitlane_version",
    "model",
    "loop_hz",
    "pilot_ms",
    "watchdog_stops",
    "twin",
    "disk_free_mb",
    "backlog",
    "drift",
    "mode",
)
TUB_KEYS: tuple[str, ...] = ("ref", "session", "records", "start", "end", "model")


class ProtocolError(UserError):
    """A message that breaks the fleet contract: the text says which field and why."""


# --- names and topics --------------------------------------------------------------------------------
def check_car_name(name: object) -> str:
    """The name itself if it is a valid car name (like a Kubernetes name), else ProtocolError."""
    if not isinstance(name, str) or not _CAR_NAME.match(name):
        raise ProtocolError(f"car name {name!r} is not valid: use {CAR_NAME_RULE}")
    return name


def up_topic(car: str) -> str:
    return f"{TOPIC_ROOT}/{check_car_name(car)}/{UP}"


def ack_topic(car: str) -> str:
    return f"{TOPIC_ROOT}/{check_car_name(car)}/{ACK}"


def parse_topic(topic: str) -> tuple[str, str]:
    """(car name, "up" | "ack") of a fleet topic; ProtocolError for any other topic."""
    parts = topic.split("/") if isinstance(topic, str) else []
    if len(parts) != 4 or "/".join(parts[:2]) != TOPIC_ROOT or parts[3] not in (UP, ACK):
        raise ProtocolError(f"topic {topic!r} is not {TOPIC_ROOT}/<car>/{UP} or .../{ACK}")
    return check_car_name(parts[2]), parts[3]


# --- JSON ----------------------------------------------------------------------------------------------
def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def encode_json(doc: dict[str, Any]) -> bytes:
    """Compact, sorted, strict JSON (NaN and infinities are refused: JSON has no such numbers)."""
    try:
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"message cannot be encoded as JSON: {exc}") from None


def decode_json(payload: bytes, what: str) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"{what} of {len(payload)} bytes is over the {MAX_PAYLOAD} byte limit")
    try:
        doc = json.loads(payload.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"{what} is not UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError(f"{what} is not a JSON object")
    return doc


# --- field checks ------------------------------------------------------------------------------------------
def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)  # type: ignore[arg-type]
    )


def _need(ok: bool, where: str, what: str, value: object) -> None:
    if not ok:
        shown = repr(value)
        raise ProtocolError(f"{where} must be {what}, got {shown[:80]}")


def _number_or_null(body: dict, key: str, where: str) -> None:
    value = body.get(key)
    _need(value is None or _is_number(value), f"{where}.{key}", "a finite number or null", value)


def _dict_or_null(body: dict, key: str, where: str) -> dict | None:
    value = body.get(key)
    _need(value is None or isinstance(value, dict), f"{where}.{key}", "an object or null", value)
    return value


def check_seq(seq: object, where: str = "seq") -> int:
    _need(_is_int(seq) and 1 <= seq <= _MAX_SEQ, where, "a positive integer", seq)  # type: ignore[operator]
    return int(seq)  # type: ignore[call-overload]


# --- bodies --------------------------------------------------------------------------------------------------
def check_heartbeat(body: dict[str, Any], car: str) -> None:
    """Every key of a heartbeat is present (null when unknown) and of its type; extra keys are allowed."""
    where = "heartbeat"
    missing = [k for k in HEARTBEAT_KEYS if k not in body]
    if missing:
        raise ProtocolError(f"heartbeat lacks {', '.join(missing)} (every key is sent, null when unknown)")
    _need(body["name"] == car, f"{where}.name", f"the record's car {car!r}", body["name"])
    _need(
        body["profile"] is None or body["profile"] in PROFILES,
        f"{where}.profile",
        "twin, pi or null",
        body["profile"],
    )
    for key in ("image", "pitlane_version", "mode"):
        _need(
            body[key] is None or isinstance(body[key], str), f"{where}.{key}", "a string or null", body[key]
        )
    model = _dict_or_null(body, "model", where)
    if model is not None:
        running = _dict_or_null(model, "running", f"{where}.model")
        if running is not None:
            for key in ("digest", "state"):
                value = running.get(key)
                _need(
                    value is None or isinstance(value, str),
                    f"{where}.model.running.{key}",
                    "a string or null",
                    value,
                )
            serial = running.get("serial")
            _need(
                serial is None or _is_int(serial),
                f"{where}.model.running.serial",
                "an integer or null",
                serial,
            )
        desired = model.get("desired")
        _need(
            desired is None or isinstance(desired, str), f"{where}.model.desired", "a string or null", desired
        )
        _number_or_null(model, "differs_since", f"{where}.model")
    for key in ("loop_hz", "disk_free_mb"):
        _number_or_null(body, key, where)
    pilot_ms = _dict_or_null(body, "pilot_ms", where)
    for key in ("p50", "p99"):
        if pilot_ms is not None:
            _number_or_null(pilot_ms, key, f"{where}.pilot_ms")
    stops = _dict_or_null(body, "watchdog_stops", where) or {}
    for reason, count in stops.items():
        _need(_is_count(count), f"{where}.watchdog_stops[{reason!r}]", "a count", count)
    twin = _dict_or_null(body, "twin", where)
    if twin is not None:
        _need(
            twin.get("laps") is None or _is_int(twin.get("laps")),
            f"{where}.twin.laps",
            "an integer or null",
            twin.get("laps"),
        )
        for key in ("cte_mean", "cte_max"):
            _number_or_null(twin, key, f"{where}.twin")
    backlog = _dict_or_null(body, "backlog", where)
    for key in ("records", "tubs", "tub_records"):
        if backlog is not None:
            value = backlog.get(key)
            _need(_is_count(value), f"{where}.backlog.{key}", "a count", value)
    drift = _dict_or_null(body, "drift", where)
    if drift is not None:
        _number_or_null(drift, "score", f"{where}.drift")
        _need(_is_int(drift.get("frames")), f"{where}.drift.frames", "an integer", drift.get("frames"))
        baseline = drift.get("baseline")
        _need(baseline in DRIFT_BASELINES, f"{where}.drift.baseline", "bundle or none", baseline)


def check_event(body: dict[str, Any]) -> None:
    kind = body.get("type")
    _need(isinstance(kind, str) and bool(_EVENT_TYPE.match(kind)), "event.type", "a lower-case word", kind)
    _need(isinstance(body.get("detail"), dict), "event.detail", "an object", body.get("detail"))


def check_tub(body: dict[str, Any]) -> None:
    missing = [k for k in TUB_KEYS if k not in body]
    if missing:
        raise ProtocolError(f"tub record lacks {', '.join(missing)}")
    ref = body["ref"]
    _need(isinstance(ref, str) and "@sha256:" in ref, "tub.ref", "REGISTRY/REPO@sha256:...", ref)
    _need(
        isinstance(body["session"], str) and bool(body["session"]),
        "tub.session",
        "a session id",
        body["session"],
    )
    _need(_is_count(body["records"]), "tub.records", "a count", body["records"])
    for key in ("start", "end"):
        _number_or_null(body, key, "tub")
    model = body["model"]
    _need(model is None or isinstance(model, str), "tub.model", "a digest or null", model)


_BODY_CHECKS = {
    HEARTBEAT: check_heartbeat,
    EVENT: lambda body, car: check_event(body),
    TUB: lambda body, car: check_tub(body),
}


def heartbeat_body(name: str, **values: Any) -> dict[str, Any]:
    """A heartbeat body with every key present: `values` given, the rest null (unknown)."""
    unknown = [k for k in values if k not in HEARTBEAT_KEYS]
    if unknown:
        raise ProtocolError(f"heartbeat has no key(s) {', '.join(unknown)}")
    body: dict[str, Any] = dict.fromkeys(HEARTBEAT_KEYS)
    body.update(values, name=name)
    return body


# --- records --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """One message from a car: what the spool stores and the sender publishes (payload = `encode()`)."""

    car: str
    seq: int  # strictly increasing per car, never reused
    kind: str  # heartbeat | event | tub
    t: float  # [s] the car's wall clock (unix time) when the record was made
    boot: str  # uuid4 hex of the spool that numbered it
    body: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "car": self.car,
            "seq": self.seq,
            "kind": self.kind,
            "t": self.t,
            "boot": self.boot,
            "body": self.body,
        }

    def encode(self) -> bytes:
        """The checked payload bytes (ProtocolError if the record is invalid or over MAX_PAYLOAD)."""
        check_record(self)
        payload = encode_json(self.to_json())
        if len(payload) > MAX_PAYLOAD:
            raise ProtocolError(
                f"{self.kind} record of {len(payload)} bytes is over the {MAX_PAYLOAD} byte limit"
            )
        return payload

    @property
    def topic(self) -> str:
        return up_topic(self.car)


def check_record(record: Record) -> None:
    check_car_name(record.car)
    check_seq(record.seq)
    _need(record.kind in KINDS, "kind", " | ".join(KINDS), record.kind)
    _need(_is_number(record.t) and record.t >= 0, "t", "a unix time in seconds", record.t)
    _need(
        isinstance(record.boot, str) and bool(_BOOT.match(record.boot)),
        "boot",
        "32 lower-case hex digits",
        record.boot,
    )
    _need(isinstance(record.body, dict), "body", "an object", record.body)
    _BODY_CHECKS[record.kind](record.body, record.car)


def check_body(kind: str, body: dict[str, Any], car: str) -> None:
    """Check a body before it is spooled (the car refuses to store what the ingest would refuse)."""
    _need(kind in KINDS, "kind", " | ".join(KINDS), kind)
    _need(isinstance(body, dict), "body", "an object", body)
    _BODY_CHECKS[kind](body, check_car_name(car))


def parse_record(payload: bytes, topic: str | None = None) -> Record:
    """A checked Record from a publish's payload; with `topic`, its car must be the topic's (no forging)."""
    doc = decode_json(payload, "record")
    _need(doc.get("v") == VERSION, "v", f"{VERSION} (this pitlane's protocol version)", doc.get("v"))
    missing = [k for k in ("car", "seq", "kind", "t", "boot", "body") if k not in doc]
    if missing:
        raise ProtocolError(f"record lacks {', '.join(missing)}")
    record = Record(doc["car"], doc["seq"], doc["kind"], doc["t"], doc["boot"], doc["body"])
    check_record(record)
    if topic is not None:
        car, direction = parse_topic(topic)
        if direction != UP:
            raise ProtocolError(f"a record arrived on {topic!r}, not on an {UP} topic")
        if car != record.car:
            raise ProtocolError(f"record names car {record.car!r} but arrived on {topic!r} (forged name)")
    return record


# --- acks -----------------------------------------------------------------------------------------------------
def seq_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted, merged closed ranges [[a, b], ...] covering exactly `seqs`."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out


@dataclass(frozen=True)
class Ack:
    """The ingest's word that it stored these seqs of `car` durably (closed ranges)."""

    car: str
    seqs: tuple[tuple[int, int], ...]

    def __contains__(self, seq: object) -> bool:
        return _is_int(seq) and any(a <= seq <= b for a, b in self.seqs)  # type: ignore[operator]

    def count(self) -> int:
        return sum(b - a + 1 for a, b in self.seqs)

    def encode(self) -> bytes:
        payload = encode_json(
            {"v": VERSION, "car": check_car_name(self.car), "seqs": [list(r) for r in self.seqs]}
        )
        if len(payload) > MAX_PAYLOAD:
            raise ProtocolError(f"ack of {len(payload)} bytes is over the {MAX_PAYLOAD} byte limit; split it")
        return payload

    @property
    def topic(self) -> str:
        return ack_topic(self.car)


def make_ack(car: str, seqs: Iterable[int]) -> Ack:
    return Ack(check_car_name(car), tuple((a, b) for a, b in seq_ranges(check_seq(s) for s in seqs)))


def parse_ack(payload: bytes, topic: str | None = None) -> Ack:
    """A checked Ack; with `topic`, its car must be the topic's."""
    doc = decode_json(payload, "ack")
    _need(doc.get("v") == VERSION, "v", f"{VERSION} (this pitlane's protocol version)", doc.get("v"))
    car = check_car_name(doc.get("car"))
    seqs = doc.get("seqs")
    _need(isinstance(seqs, list), "seqs", "a list of [first, last] ranges", seqs)
    ranges = []
    for i, pair in enumerate(seqs):  # type: ignore[arg-type]
        ok = isinstance(pair, list) and len(pair) == 2
        _need(ok, f"seqs[{i}]", "a [first, last] pair", pair)
        a, b = check_seq(pair[0], f"seqs[{i}][0]"), check_seq(pair[1], f"seqs[{i}][1]")
        _need(a <= b, f"seqs[{i}]", "a range with first <= last", pair)
        ranges.append((a, b))
    if topic is not None:
        topic_car, direction = parse_topic(topic)
        if direction != ACK or topic_car != car:
            raise ProtocolError(f"ack for car {car!r} arrived on {topic!r}")
    return Ack(car, tuple(ranges))
