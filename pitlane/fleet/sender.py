"""The car's MQTT sender: publishes the spool's records and deletes them when the NUC's ingest acks them.

One thread of its own (never the vehicle loop's): it connects with paho-mqtt 2.x (MQTT 5, clean_start
False and a long session expiry: a persistent session, so acks the ingest sent while the car was away
arrive when it is back), publishes the oldest unacked records in seq order at QoS 1 with at most `window`
in flight, resends a record the ingest has not acked after `resend_s` (the interval doubles while nothing
is acked, so a long NUC outage does not flood the broker) and everything in the window after a
reconnect, and applies acks to the spool. A broker that is down, refuses the car or answers garbage gives
one log line per outage and a reconnect with exponential backoff; nothing leaves the spool unacked.

Delivery is at least once on the wire and exactly once in the NUC's store: the ingest keeps (car, seq)
once and acks duplicates again.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pitlane.fleet import protocol
from pitlane.fleet.spool import Spool

logger = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600  # [s] the broker keeps the car's session (its ack subscription) a week


@dataclass(frozen=True)
class SenderParams:
    host: str  # the broker (Mosquitto on the NUC)
    port: int = 1883
    password: str | None = None  # the car's MQTT password (user = car name); None: anonymous
    window: int = 100  # records in flight (published, not yet acked) at most
    resend_s: float = 10.0  # [s] a record not acked this long is published again
    max_resend_s: float = 120.0  # [s] the resend interval doubles up to this while nothing is acked
    keepalive_s: int = 10  # [s] MQTT keepalive: a silently dead link is noticed within 1.5x this
    connect_timeout_s: float = 5.0  # [s]
    backoff_s: float = 1.0  # [s] first wait before reconnecting
    max_backoff_s: float = 30.0  # [s] longest wait between two connection attempts
    stall_warn_s: float = 60.0  # [s] records unacked this long while connected: say so (once)

    @classmethod
    def from_broker(cls, broker: str, **kw: Any) -> SenderParams:
        """From FLEET_BROKER's "host:port" (port 1883 when left out)."""
        host, sep, port = broker.strip().rpartition(":")
        if not sep:
            host, port = broker.strip(), "1883"
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise protocol.ProtocolError(f"broker {broker!r} is not HOST:PORT (e.g. nuc.local:1883)")
        return cls(host=host, port=int(port), **kw)


@dataclass
class SenderStats:
    connected: bool = False
    connects: int = 0  # successful connections
    published: int = 0  # publishes, first sends and resends
    resent: int = 0
    acked: int = 0  # spool rows deleted by acks
    last_ack: float | None = None  # [s] monotonic time of the last ack
    last_error: str = ""


class Sender:
    """Publishes `spool` to the broker in its own thread: `start()`, `stop()`; `stats` for heartbeats."""

    def __init__(
        self,
        spool: Spool,
        params: SenderParams,
        *,
        clock: Callable[[], float] = time.monotonic,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.spool = spool
        self.car = spool.car
        self.params = params
        self.clock = clock
        self.stats = SenderStats()
        self._client_factory = client_factory or self._new_client
        self._client: Any = None
        self._ready = False  # connected and subscribed to the ack topic
        self._sent: dict[int, float] = {}  # seq -> [s] when last published on this connection
        self._resend_s = params.resend_s
        self._backoff = params.backoff_s
        self._next_try = 0.0
        self._outage_since: float | None = None
        self._stall_warned = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_scan = -1.0
        self._connect_started = 0.0
        self._refusal = ""  # set by a paho callback: the broker refused the car
        self._acks: list[tuple[int, int]] = []  # ranges acked during this turn, not applied yet

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> Sender:
        self._thread = threading.Thread(target=self._run, name=f"fleet-sender-{self.car}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def poke(self) -> None:
        """A record was spooled: publish it now rather than at the next scan."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as exc:  # the sender outlives any surprise; the spool keeps everything
                logger.exception("fleet sender: unexpected failure; reconnecting")
                self._drop(f"{type(exc).__name__}: {exc}")
        self._close_client()

    # --- one turn of the loop --------------------------------------------------------------------------
    def step(self) -> None:
        now = self.clock()
        if self._client is None:
            if now < self._next_try:
                self._wake.wait(min(0.2, self._next_try - now))
                self._wake.clear()
                return
            self._connect()
            return
        rc = self._client.loop(timeout=0.02)
        if self._refusal:  # a callback saw the broker refuse the car (callbacks must not close the client)
            why, self._refusal = self._refusal, ""
            self._drop(why)
            self._backoff = self.params.max_backoff_s  # credentials do not fix themselves quickly
            return
        if self._acks:
            self._apply_acks()
        if rc != 0:
            self._drop(f"connection lost (paho error {int(rc)})")
            return
        if (
            not self._ready
            and now - self._connect_started > self.params.connect_timeout_s + self.params.keepalive_s
        ):
            self._drop(
                f"broker {self.params.host}:{self.params.port} accepted the connection but never answered"
            )
            return
        if self._ready:
            self._publish_due()
            if self._wake.wait(0.02):
                self._wake.clear()

    def _new_client(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.car, protocol=mqtt.MQTTv5)
        if self.params.password is not None:
            client.username_pw_set(self.car, self.params.password)
        client.connect_timeout = self.params.connect_timeout_s
        client.max_inflight_messages = max(20, self.params.window)
        return client

    def _connect(self) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = self._client_factory()
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        try:
            client.connect(
                self.params.host,
                self.params.port,
                keepalive=self.params.keepalive_s,
                clean_start=False,
                properties=props,
            )
        except (OSError, ValueError) as exc:
            self._client = client
            self._drop(f"cannot reach broker {self.params.host}:{self.params.port}: {exc}")
            return
        self._client = client
        self._connect_started = self.clock()
        self._sent.clear()  # a new connection: the whole window goes out again

    def _drop(self, why: str) -> None:
        """Forget the connection and schedule the next attempt (exponential backoff with jitter)."""
        self._close_client()
        now = self.clock()
        if self._outage_since is None:
            self._outage_since = now
            logger.warning(
                "fleet sender: %s; %d record(s) stay spooled, retrying with backoff",
                why,
                self.spool.count(),
            )
        self.stats.last_error = why
        self._next_try = now + self._backoff * random.uniform(0.8, 1.2)
        self._backoff = min(self._backoff * 2, self.params.max_backoff_s)

    def _close_client(self) -> None:
        client, self._client, self._ready = self._client, None, False
        self.stats.connected = False
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect()
            with contextlib.suppress(Exception):
                client.loop(timeout=0.01)  # flush the DISCONNECT, close the socket

    # --- paho callbacks (called inside client.loop, on this thread) ---------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            hint = (
                "; check FLEET_CAR_NAME / FLEET_PASSWORD (pitlane fleet add-car prints them)"
                if reason_code.value in (0x86, 0x87)
                else ""
            )
            where = f"{self.params.host}:{self.params.port}"
            self._refusal = f"broker {where} refused car {self.car}: {reason_code}{hint}"
            return
        client.subscribe(protocol.ack_topic(self.car), qos=protocol.QOS)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self._refusal = f"broker refused the ack subscription of car {self.car}: {reason_codes[0]}"
            return
        self._ready = True
        self.stats.connected = True
        self.stats.connects += 1
        self._backoff = self.params.backoff_s
        if self._outage_since is not None:
            logger.info(
                "fleet sender: connected to %s:%d after %.0f s; %d record(s) to send",
                self.params.host,
                self.params.port,
                self.clock() - self._outage_since,
                self.spool.count(),
            )
            self._outage_since = None
        self._wake.set()

    def _on_message(self, client, userdata, message) -> None:
        try:
            ack = protocol.parse_ack(message.payload, message.topic)
        except protocol.ProtocolError as exc:
            logger.warning("fleet sender: ignoring a bad ack on %s: %s", message.topic, exc)
            return
        if ack.car == self.car:
            self._acks.extend(ack.seqs)  # applied after this turn's reads: one spool commit for many acks

    def _apply_acks(self) -> None:
        acks, self._acks = self._acks, []
        deleted = self.spool.ack(acks)
        for seq in [s for s in self._sent if any(a <= s <= b for a, b in acks)]:
            del self._sent[seq]
        self.stats.acked += deleted
        self.stats.last_ack = self.clock()
        self._resend_s = self.params.resend_s
        self._stall_warned = False
        self._wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.stats.last_error = f"broker refused a publish: {reason_code}"
            logger.error(
                "fleet sender: broker refused a record of car %s (%s): is it allowed to publish on %s?",
                self.car,
                reason_code,
                protocol.up_topic(self.car),
            )

    # --- publishing ----------------------------------------------------------------------------------------------
    def _publish_due(self) -> None:
        now = self.clock()
        if not self._wake.is_set() and now - self._last_scan < min(1.0, self._resend_s / 4):
            return
        self._last_scan = now
        rows = self.spool.pending(self.params.window)
        window = {r.seq for r in rows}
        for seq in [s for s in self._sent if s not in window]:
            del self._sent[seq]  # acked (or thinned) meanwhile
        resent_any = False
        topic = protocol.up_topic(self.car)
        for row in rows:
            sent_at = self._sent.get(row.seq)
            if sent_at is not None and now - sent_at < self._resend_s:
                continue
            info = self._client.publish(topic, row.payload, qos=protocol.QOS)
            if info.rc != 0:
                self._drop(f"publish failed (paho error {int(info.rc)})")
                return
            self.stats.published += 1
            if sent_at is not None:
                self.stats.resent += 1
                resent_any = True
            self._sent[row.seq] = now
        if resent_any:
            self._resend_s = min(self._resend_s * 2, self.params.max_resend_s)
            self._warn_stall(now)

    def _warn_stall(self, now: float) -> None:
        since = self.stats.last_ack
        if self._stall_warned or (since is not None and now - since < self.params.stall_warn_s):
            return
        self._stall_warned = True
        logger.warning(
            "fleet sender: no ack from the NUC for %s while connected; %d record(s) wait in the spool (is the "
            "fleet service running and car %s added with `pitlane fleet add-car`?)",
            "ever" if since is None else f"{now - since:.0f} s",
            self.spool.count(),
            self.car,
        )
