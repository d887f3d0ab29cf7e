"""The NUC's ingest: every car's records from Mosquitto into the fleet store, each once, then acknowledged.

It subscribes to `pitlane/cars/+/up` at QoS 1 in a persistent session (clean start off, the session never
expires), so what arrives while it is down waits in the broker. Messages are taken in batches: each is
checked against the protocol, the topic's car and the list of cars (the broker's password file), tub records
against the registry; the batch is written in one SQLite transaction (INSERT OR IGNORE by (car, seq)) and
committed, and only THEN are the stored seqs acknowledged on `pitlane/cars/<car>/ack` (duplicates are
acknowledged again, never stored twice) and the MQTT messages released (paho's manual ack).

A bad message (malformed, oversized, forged car name, unknown car, a tub the registry lacks) costs one log
line (at most one per reason every few seconds), a counter, and is never acknowledged; nothing stops.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pitlane.artifacts import oci
from pitlane.fleet import broker
from pitlane.fleet.protocol import (
    HEARTBEAT,
    INGEST_USER,
    MAX_PAYLOAD,
    QOS,
    TUB,
    UP_WILDCARD,
    ProtocolError,
    make_ack,
    parse_record,
    parse_topic,
)
from pitlane.fleet.ratelog import RateLimitedLog
from pitlane.fleet.store import Incoming, Store
from pitlane.fleet.tubcheck import RegistryDown, TubRefused, check_tub
from pitlane.fleet.view import CLOCK_TOLERANCE_S

log = logging.getLogger(__name__)

SESSION_NEVER_EXPIRES = 0xFFFFFFFF  # [s] MQTT 5's "never" for the session expiry interval
# A heartbeat made with more than this many records waiting in the car's spool was queued behind them: its age
# says how long the link was down, not how wrong the car's clock is (live, a car's backlog is 0 to 2).
CLOCK_MAX_BACKLOG = 5
ACK_RANGES_PER_MESSAGE = 2000  # ranges per ack publish (an ack stays far below MAX_PAYLOAD)
REASONS = (
    "oversized",
    "malformed",
    "forged",
    "unknown_car",
    "tub_refused",
    "registry_unavailable",
    "store_error",
    "clock_skew",
)


@dataclass(frozen=True)
class IngestConfig:
    broker: str  # host:port of Mosquitto
    password: str  # the ingest's MQTT password (user pitlane-ingest)
    passwd: Path  # the broker's password file: the list of known cars
    registry: str | None = None  # host:port of the NUC's registry (tub records are checked there)
    client_id: str = INGEST_USER
    batch_max: int = 500  # records per transaction
    batch_wait_s: float = 0.01  # [s] wait this long for more messages before committing a batch
    registry_timeout_s: float = 5.0  # [s]
    clock_tolerance_s: float = CLOCK_TOLERANCE_S  # [s] a car clock further off than this is flagged


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    received: float  # [s] NUC wall clock


class KnownCars:
    """The cars in the broker's password file, re-read when the file changes (a car added while running)."""

    def __init__(self, passwd: Path) -> None:
        self.passwd = Path(passwd)
        self._stamp: tuple[float, int, int] | None = None
        self._names: set[str] = set()

    def __call__(self) -> set[str]:
        try:
            st = self.passwd.stat()
            stamp = (st.st_mtime, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp, self._names = stamp, broker.car_names(self.passwd)
        return self._names


class Ingest:
    """`start()` connects and consumes in the background; `stop()`; `counts` (refused by reason) and `stats`."""

    def __init__(self, config: IngestConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.known = KnownCars(config.passwd)
        self.counts: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()  # received, stored, duplicates, acked
        self.connected = threading.Event()
        self._queue: queue.Queue[Message] = queue.Queue()
        self._stop = threading.Event()
        self._log = RateLimitedLog(log)
        self._registry = (
            oci.Client(config.registry, timeout_s=config.registry_timeout_s) if config.registry else None
        )
        self._worker: threading.Thread | None = None
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(INGEST_USER, self.config.password)
        client.reconnect_delay_set(1, 2)  # [s] first retry after 1 s, then at most every 2 s
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # --- MQTT callbacks (paho's network thread) ------------------------------------------------------
    def _on_connect(self, client, _userdata, _flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            self._log.warn("connect", f"fleet ingest: broker {self.config.broker} refused: {reason_code}")
            return
        client.subscribe(UP_WILDCARD, qos=QOS)
        self.connected.set()
        log.info("fleet ingest: connected to %s, subscribed to %s", self.config.broker, UP_WILDCARD)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            self._log.warn("disconnect", f"fleet ingest: lost broker {self.config.broker} ({reason_code})")

    def _on_message(self, _client, _userdata, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos, time.time()))

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> Ingest:
        host, _, port = self.config.broker.rpartition(":")
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_NEVER_EXPIRES
        self.client.connect_async(host, int(port), keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()
        self._worker = threading.Thread(target=self._run, daemon=True, name="fleet-ingest")
        self._worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(10)
        self.client.disconnect()
        self.client.loop_stop()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        return self.connected.wait(timeout_s)

    # --- the batch loop ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + self.config.batch_wait_s
            while len(batch) < self.config.batch_max:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                self.process(batch)
            except Exception:  # never let one batch end the ingest; the cars resend what was not acked
                log.exception("fleet ingest: a batch of %d failed; the cars will resend it", len(batch))

    def process(self, batch: list[Message]) -> dict[str, list[int]]:
        """Check, store, commit, acknowledge; returns car -> seqs acknowledged."""
        known = self.known()
        items = [item for m in batch if (item := self._check(m, known)) is not None]
        self.stats["received"] += len(batch)
        durable: dict[str, list[int]] = {}
        if items:
            try:
                before = self.store.inserted
                durable = self.store.add(items)
                self.stats["stored"] += self.store.inserted - before
                self.stats["duplicates"] += len(items) - (self.store.inserted - before)
            except Exception as exc:  # sqlite3.Error, OSError (disk full): nothing acked, cars resend
                self._refuse("store_error", None, f"the fleet store could not commit: {exc}")
        for car, seqs in durable.items():
            ack = make_ack(car, seqs)
            for i in range(0, len(ack.seqs), ACK_RANGES_PER_MESSAGE):
                part = type(ack)(car, ack.seqs[i : i + ACK_RANGES_PER_MESSAGE])
                self.client.publish(part.topic, part.encode(), qos=QOS)
            self.stats["acked"] += len(seqs)
        for m in batch:  # release the MQTT messages only now: a crash before this point redelivers them
            if m.qos:
                self.client.ack(m.mid, m.qos)
        self._clock(items)
        return durable

    def _check(self, m: Message, known: set[str]) -> Incoming | None:
        try:
            car, _ = parse_topic(m.topic)
        except ProtocolError as exc:
            return self._refuse("malformed", None, f"fleet ingest: refused a message: {exc}")
        if len(m.payload) > MAX_PAYLOAD:
            return self._refuse(
                "oversized",
                car,
                f"fleet ingest: refused {len(m.payload)} bytes from {car}: over {MAX_PAYLOAD}",
            )
        if car not in known:
            return self._refuse(
                "unknown_car",
                car,
                f"fleet ingest: {car!r} is not a known car (no credentials in {self.config.passwd}); "
                "its records wait on the car until `pitlane fleet add-car` adds it",
            )
        try:
            record = parse_record(m.payload)
        except ProtocolError as exc:
            return self._refuse("malformed", car, f"fleet ingest: refused a record from {car}: {exc}")
        if record.car != car:
            return self._refuse(
                "forged",
                car,
                f"fleet ingest: refused a record naming car {record.car!r} sent by {car!r} (forged name)",
            )
        tub = None
        if record.kind == TUB and not self.store.has(car, record.seq):
            if self._registry is None:
                return self._refuse("registry_unavailable", car, "fleet ingest: no registry to check tubs")
            try:
                tub = check_tub(self._registry, car, record.body)
            except TubRefused as exc:
                return self._refuse("tub_refused", car, f"fleet ingest: refused tub record of {car}: {exc}")
            except RegistryDown as exc:
                return self._refuse(
                    "registry_unavailable", car, f"fleet ingest: tub record of {car} waits: {exc}"
                )
        return Incoming(record, m.received, tub)

    def _refuse(self, reason: str, car: str | None, text: str) -> Incoming | None:
        """Count and log a refused message; None (nothing to store)."""
        self.counts[reason] += 1
        self._log.warn(reason, text)
        with contextlib.suppress(Exception):  # the store may be what failed; the in-memory count remains
            self.store.refused(reason, car, text)
        return None

    def _clock(self, items: list[Incoming]) -> None:
        """Each car's clock offset (receive time minus car time) from a heartbeat that was sent live: the
        newest record of the car in this batch, made with almost nothing waiting before it. A record that
        waited in a spool says how long the link was down, not how wrong the car's clock is."""
        newest: dict[str, Incoming] = {}
        for item in items:
            car = item.record.car
            if car not in newest or newest[car].record.seq < item.record.seq:
                newest[car] = item
        for car, item in newest.items():
            r = item.record
            backlog = (r.body.get("backlog") or {}).get("records") if r.kind == HEARTBEAT else None
            if not isinstance(backlog, int) or backlog > CLOCK_MAX_BACKLOG:
                continue
            offset = item.received - r.t
            self.store.set_clock_offset(car, offset)
            if abs(offset) > self.config.clock_tolerance_s:
                self.counts["clock_skew"] += 1
                self._log.warn(
                    "clock_skew",
                    f"fleet ingest: {car}'s clock is {-offset:+.1f} s off the NUC's (kept both times; "
                    "check the car's NTP)",
                )
