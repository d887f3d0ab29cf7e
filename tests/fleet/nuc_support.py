"""Support for the NUC side's tests (not a test module): a real Mosquitto with pitlane's config and two cars'
credentials, MQTT clients that play a car or a plain subscriber, records built with the shared protocol, and
a minimal tub bundle in the registry. The fixture that starts the broker is in conftest.py."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pitlane.fleet import broker as fb
from pitlane.fleet import protocol as p

BOOT = uuid.uuid4().hex
# Debian's mosquitto (the broker and mosquitto_passwd): .ci/run installs it
needs_mosquitto = pytest.mark.skipif(
    not (shutil.which(fb.BINARY) and shutil.which(fb.PASSWD_BINARY)),
    reason="Debian's mosquitto is not installed (apt-get install mosquitto)",
)


@dataclass
class FleetBroker:
    broker: fb.Broker
    data: Path
    passwords: dict[str, str]  # user -> password (cars and the ingest)

    @property
    def port(self) -> int:
        return self.broker.port

    @property
    def host(self) -> str:
        return self.broker.host


def start_fleet_broker(data: Path, cars: tuple[str, ...] = ("car-1", "car-2")) -> FleetBroker:
    passwd = data / fb.PASSWD_NAME
    passwords = {car: fb.add_car(passwd, car) for car in cars}
    passwords[p.INGEST_USER] = fb.ingest_password(data, passwd)
    broker = fb.Broker(fb.BrokerConfig(data=data, port=0)).start()
    return FleetBroker(broker, data, passwords)


@dataclass
class Peer:
    """A paho client that records what it receives and which publishes the broker acknowledged."""

    client: mqtt.Client
    received: list[tuple[str, bytes]] = field(default_factory=list)
    acked_mids: set[int] = field(default_factory=set)
    connect_reason: list[str] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def peer(
    port: int,
    user: str | None,
    password: str | None,
    client_id: str,
    subscribe: str | None = None,
    persistent: bool = False,
) -> Peer:
    """Connect (MQTT 5); `persistent`: clean start off and a session that never expires."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    me = Peer(client)
    if user is not None:
        client.username_pw_set(user, password)

    def on_connect(c, _u, _f, reason, _props):
        me.connect_reason.append(str(reason))
        if not reason.is_failure:
            if subscribe:
                c.subscribe(subscribe, qos=1)
            me.connected.set()

    def on_message(_c, _u, msg):
        with me.lock:
            me.received.append((msg.topic, bytes(msg.payload)))

    def on_publish(_c, _u, mid, _reason, _props):
        with me.lock:
            me.acked_mids.add(mid)

    client.on_connect, client.on_message, client.on_publish = on_connect, on_message, on_publish
    props = None
    if persistent:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0xFFFFFFFF
    client.connect("127.0.0.1", port, clean_start=not persistent, properties=props)
    client.loop_start()
    return me


def heartbeat(car: str, seq: int, t: float | None = None, **values) -> p.Record:
    body = p.heartbeat_body(
        car,
        profile="twin",
        pitlane_version="0.1.0",
        model={
            "running": {"digest": "sha256:" + "a" * 64, "serial": 3, "state": "running"},
            "desired": None,
            "differs_since": None,
        },
        loop_hz=20.0,
        pilot_ms={"p50": 2.0, "p99": 4.0},
        watchdog_stops={},
        disk_free_mb=1000.0,
        backlog={"records": 0, "tubs": 0, "tub_records": 0},
        mode="local",
    )
    body.update(values)
    return p.Record(car, seq, p.HEARTBEAT, time.time() if t is None else t, BOOT, body)


def event(car: str, seq: int, kind: str, **detail) -> p.Record:
    return p.Record(car, seq, p.EVENT, time.time(), BOOT, {"type": kind, "detail": detail})


def push_tub_bundle(client, car: str, records: int = 10, config_car: str | None = None) -> str:
    """A minimal data bundle in `data/<car>` (config + manifest, as tubbundle writes them); its reference."""
    from pitlane.artifacts import oci
    from pitlane.fleet.tubcheck import CONFIG_MEDIA_TYPE, CONFIG_SCHEMA, data_repository

    repo = data_repository(car)
    config = oci.canonical_json(
        {
            "schema": CONFIG_SCHEMA,
            "car": config_car or car,
            "user": None,
            "session": f"s-{records}",
            "records": records,
            "deleted": 0,
            "start": 1.0,
            "end": 2.0,
            "model": None,
            "profile": "twin",
            "chunks": [],
            "created": "2026-01-01T00:00:00Z",
        }
    )
    client.push_blob(repo, config)
    manifest = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "artifactType": p.TUB_MEDIA_TYPE,
            "config": oci.descriptor(CONFIG_MEDIA_TYPE, config),
            "layers": [],
        }
    )
    digest = client.push_manifest(repo, manifest, digest_of(manifest))
    return f"{client.registry}/{repo}@{digest}"


def digest_of(data: bytes) -> str:
    from pitlane.artifacts import oci

    return oci.sha256_digest(data)


def tub_record(car: str, seq: int, ref: str, records: int = 10) -> p.Record:
    body = {
        "ref": ref,
        "session": f"s-{records}",
        "records": records,
        "start": 1.0,
        "end": 2.0,
        "model": None,
    }
    return p.Record(car, seq, p.TUB, time.time(), BOOT, body)
