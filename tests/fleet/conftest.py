"""Real parts for the fleet's car-side tests: a Mosquitto broker (test-only launcher: the product's is
pitlane.fleet.broker, the NUC side's) and an ack responder that stores and acks like the NUC's ingest."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from helpers import free_port, wait_until

from pitlane.fleet import broker as fb
from pitlane.fleet import protocol

from .nuc_support import start_fleet_broker

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class TestBroker:
    """Mosquitto on 127.0.0.1:`port` with persistence in `folder` (so a SIGKILL + restart keeps what it had
    saved), no queue limit, and optionally per-user passwords and the fleet's ACL."""

    __test__ = False

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        lines = [
            f"user {pwd.getpwuid(os.getuid()).pw_name}",  # run as root, mosquitto would drop to `mosquitto`
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {folder}/",
            "autosave_interval 1",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            f"log_dest file {folder}/mosquitto.log",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if users is None:
            lines.append("allow_anonymous true")
        else:
            pwfile = folder / "passwd"
            pwfile.touch()
            for user, password in users.items():
                subprocess.run([PASSWD, "-b", str(pwfile), user, password], check=True, capture_output=True)
            acl = folder / "acl"
            acl.write_text(
                f"user {protocol.INGEST_USER}\ntopic read {protocol.UP_WILDCARD}\n"
                f"topic write {protocol.ACK_WILDCARD}\n\n"
                "pattern write pitlane/cars/%u/up\npattern read pitlane/cars/%u/ack\n"
            )
            lines += ["allow_anonymous false", f"password_file {pwfile}", f"acl_file {acl}"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TestBroker:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port)
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye, no final save (only what autosave wrote survives)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None


class Responder:
    """Stands in for the NUC's ingest: subscribes to every car's up topic (persistent session, QoS 1),
    keeps every delivery, and acks each record after storing it."""

    def __init__(self, broker: TestBroker, password: str | None = None, client_id: str = "responder") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.deliveries: dict[tuple[str, int], list[bytes]] = defaultdict(list)
        self.order: list[tuple[str, int]] = []
        self.refused: list[str] = []
        self.acking = True
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if password is not None:
            self.client.username_pw_set(protocol.INGEST_USER, password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(protocol.UP_WILDCARD, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", broker.port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        try:
            record = protocol.parse_record(message.payload, message.topic)
        except protocol.ProtocolError as exc:
            self.refused.append(str(exc))
            return
        key = (record.car, record.seq)
        with self._lock:
            if key not in self.deliveries:
                self.order.append(key)
            self.deliveries[key].append(bytes(message.payload))
        if self.acking:
            ack = protocol.make_ack(record.car, [record.seq])
            client.publish(ack.topic, ack.encode(), qos=1)

    def stored(self, car: str = "car-1") -> dict[int, protocol.Record]:
        """seq -> record, as the ingest's INSERT OR IGNORE on (car, seq) would keep them."""
        with self._lock:
            return {
                seq: protocol.parse_record(payloads[0])
                for (c, seq), payloads in self.deliveries.items()
                if c == car
            }

    def conflicts(self) -> list[tuple[str, int]]:
        """(car, seq) delivered with two different payloads: a reused seq (the one thing that loses data)."""
        with self._lock:
            return [key for key, payloads in self.deliveries.items() if len(set(payloads)) > 1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
    if not wait_until(predicate, timeout_s):
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def make_broker(tmp_path):
    """make_broker(users=None, start=True) -> a TestBroker in its own folder; stopped after the test."""
    if not os.path.exists(MOSQUITTO):
        pytest.skip("Debian's mosquitto is not installed (apt-get install mosquitto)")
    made: list[TestBroker] = []

    def make(users: dict[str, str] | None = None, start: bool = True) -> TestBroker:
        b = TestBroker(tmp_path / f"broker{len(made)}", users)
        made.append(b)
        return b.start() if start else b

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def make_responder():
    """make_responder(broker, password=None) -> a Responder; closed after the test."""
    made: list[Responder] = []

    def make(broker: TestBroker, password: str | None = None) -> Responder:
        made.append(Responder(broker, password))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def broker(make_broker):
    return make_broker()


@pytest.fixture
def responder(make_responder, broker):
    return make_responder(broker)


@pytest.fixture
def wait():
    """wait(predicate, timeout_s=30, what=...) -> None, or AssertionError naming what never happened."""
    return wait_for


def write_tub(path: Path, n: int, seed: int = 0, metadata: list[str] | None = None) -> Path:
    """Append one session of `n` records to the tub at `path` (created if new), with donkeycar's own Tub.

    Images are smooth gradients with a little noise: JPEGs of a few KB, like a small camera's."""
    import numpy as np
    from donkeycar.parts.tub_v2 import Tub

    from pitlane.data.tub import INPUTS, TYPES

    rng = np.random.default_rng(seed)
    base = np.tile(np.linspace(40, 200, 160, dtype=np.float32)[None, :, None], (120, 1, 3))
    tub = Tub(str(path), inputs=list(INPUTS), types=list(TYPES), metadata=metadata or ["profile:twin"])
    for i in range(n):
        img = np.clip(np.roll(base, i, axis=1) + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        tub.write_record(
            {
                "cam/image_array": img,
                "user/angle": float(np.sin(i / 7.0)),
                "user/throttle": 0.3,
                "user/mode": "user",
                "pos/pos_x": float(i),
                "pos/pos_y": 0.0,
                "pos/pos_z": 0.0,
                "pos/speed": 1.5,
                "pos/cte": float(rng.normal(0, 0.05)),
            }
        )
    tub.close()
    return path


@pytest.fixture
def make_tub(tmp_path):
    """make_tub(name, n, seed=0) -> a tub of n records in tmp_path/name (call again to append a session)."""

    def make(name: str, n: int, seed: int = 0, folder: Path | None = None) -> Path:
        return write_tub((folder or tmp_path) / name, n, seed)

    return make


@pytest.fixture
def repo(request):
    """A fresh repository name under data/ per test (the registry is shared by the whole session)."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    return f"data/{name}-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"


@pytest.fixture
def fleet_broker(tmp_path):
    """A real Mosquitto with pitlane's product config (pitlane.fleet.broker) and two cars' credentials."""
    if not shutil.which(fb.BINARY):
        pytest.skip("Debian's mosquitto is not installed (apt-get install mosquitto)")
    fleet = start_fleet_broker(tmp_path / "broker")
    yield fleet
    fleet.broker.stop()
