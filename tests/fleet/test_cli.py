"""`pitlane fleet add-car|serve|status`: credentials shown once, the whole service as a user starts it (its
own Mosquitto and registry, children that stop with it), and a health check whose exit code scripts use."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import wait_until

from pitlane.cli import main
from pitlane.fleet import broker as fb
from pitlane.fleet import protocol as p
from pitlane.fleet.service import FleetService, ServeOptions

from .nuc_support import heartbeat, needs_mosquitto, peer

pytestmark = needs_mosquitto

ROOT = Path(__file__).resolve().parents[2]


def test_add_car_prints_the_settings_and_a_secret_once(tmp_path, capsys):
    assert main(["fleet", "add-car", "car-7", "--data", str(tmp_path), "--nuc", "nuc.local"]) == 0
    out = capsys.readouterr().out
    found = re.search(r'FLEET_PASSWORD = "([^"]+)"', out)
    assert found is not None, out
    password = found[1]
    assert 'FLEET_BROKER = "nuc.local:1883"' in out and 'FLEET_GATEWAY = "nuc.local:5001"' in out
    assert f"PITLANE_FLEET_PASSWORD={password}" in out and "PITLANE_CAR_NAME=car-7" in out
    assert "kind: Secret" in out and f'password: "{password}"' in out
    passwd = tmp_path / "broker" / "passwd"
    users = fb.users(passwd)
    assert set(users) == {"car-7", p.INGEST_USER} and fb.verify_password(users["car-7"], password)
    assert password not in passwd.read_text()
    assert main(["fleet", "add-car", "car-7", "--data", str(tmp_path)]) == 2
    assert "already has credentials" in capsys.readouterr().err
    assert main(["fleet", "add-car", "car-7", "--data", str(tmp_path), "--rotate"]) == 0
    assert not fb.verify_password(fb.users(passwd)["car-7"], password)


def test_status_exits_1_when_the_service_is_not_there(capsys):
    assert main(["fleet", "status", "--url", "http://127.0.0.1:9"]) == 2
    assert "did not answer" in capsys.readouterr().err


def test_serve_against_a_running_broker_and_registry_starts_no_children(
    fleet_broker, registry, tmp_path, capsys
):
    opts = ServeOptions(
        data=fleet_broker.data.parent,
        port=0,
        gateway_port=0,
        broker=fleet_broker.host,
        registry=registry.host,
    )
    service = FleetService(opts).start()
    car = peer(fleet_broker.port, "car-1", fleet_broker.passwords["car-1"], "car-1")
    try:
        assert service.broker is None and service.registry is None
        assert service.urls["broker"] == fleet_broker.host and service.urls["registry"] == registry.host
        car.client.publish(p.up_topic("car-1"), heartbeat("car-1", 1).encode(), qos=1)
        store = service.store
        assert store is not None
        assert wait_until(lambda: store.seqs("car-1") == [1], 5)
        assert main(["fleet", "status", "--url", service.urls["page"], "--json"]) == 1  # car-2: never seen
        doc = json.loads(capsys.readouterr().out)
        assert not doc["healthy"] and [c["healthy"] for c in doc["cars"]] == [True, False]
    finally:
        car.close()
        service.stop()


@pytest.mark.slow
def test_serve_starts_its_own_broker_and_registry_and_status_reports(tmp_path):
    data = tmp_path / "fleet"
    assert main(["fleet", "add-car", "car-1", "--data", str(data)]) == 0
    password = _password(data)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "pitlane.cli", "fleet", "serve", "--data", str(data), "--port", "0"]
    proc = subprocess.Popen(
        [*argv, "--gateway-port", "0", "--mqtt-port", "0"], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    try:
        lines = [proc.stdout.readline() for _ in range(5)]
        urls = {ln.split(":", 1)[0]: ln.split(":", 1)[1].split()[0] for ln in lines}
        page, broker = urls["fleet page"], urls["MQTT broker"]
        assert urls["registry gateway"].startswith("http://127.0.0.1:")
        car = peer(int(broker.rsplit(":", 1)[1]), "car-1", password, "car-1")
        beating = threading.Event()

        def beat():  # 2 Hz heartbeats, however slowly the status command starts on a busy machine
            for seq in range(1, 1000):
                car.client.publish(p.up_topic("car-1"), heartbeat("car-1", seq).encode(), qos=1)
                if beating.wait(0.5):
                    return

        threading.Thread(target=beat, daemon=True).start()
        status = [sys.executable, "-m", "pitlane.cli", "fleet", "status", "--url", page]
        done = subprocess.run(status, env=env, capture_output=True, text=True)
        beating.set()
        assert done.returncode == 0, done.stdout + done.stderr
        assert "car-1" in done.stdout and "1/1 healthy" in done.stdout
        car.close()
        children = _children(proc.pid)
        assert len(children) == 2  # mosquitto and docker-registry
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert wait_until(lambda: not any(_alive(c) for c in children), 5)
    finally:
        if proc.poll() is None:
            proc.kill()


def _password(data: Path) -> str:
    """car-1's password replaced by a known one, for the test's MQTT client."""
    fb.set_password(data / "broker" / "passwd", "car-1", "test-password-car-1")
    return "test-password-car-1"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


def test_status_table_names_what_is_wrong():
    from pitlane.fleet.cli import status_table

    doc = {
        "cars": [
            {
                "name": "car-1",
                "age_s": 1.0,
                "last_seen": 1.0,
                "online": True,
                "healthy": False,
                "model": {
                    "running": {"digest": "sha256:" + "a" * 64},
                    "desired": "r/m@sha256:" + "b" * 64,
                    "differs": True,
                    "differs_for_s": 42.0,
                },
                "loop_hz": 19.94,
                "pilot_ms": {"p50": 2.0, "p99": 5.5},
                "watchdog_stops": 2,
                "backlog": {"records": 3},
                "drift": {"score": 0.5},
                "clock_ok": False,
            }
        ]
    }
    table = status_table(doc)
    assert "aaaaaaaaaaaa" in table and "bbbbbbbbbbbb" in table and "19.9" in table
    assert "model differs for 42 s, clock off" in table


def test_fleet_broker_runs_mosquitto_alone_until_sigterm(tmp_path):
    """The cluster's broker pod: `pitlane fleet broker` with the credentials file mounted elsewhere."""
    passwd = tmp_path / "secret" / "passwd"
    password = fb.add_car(passwd, "car-1")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "pitlane.cli", "fleet", "broker", "--data", str(tmp_path / "data")]
    proc = subprocess.Popen(
        [*argv, "--port", "0", "--passwd", str(passwd)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert line.startswith("MQTT broker: 127.0.0.1:"), line
        port = int(line.split()[2].rsplit(":", 1)[1])
        car = peer(port, "car-1", password, "car-1")
        assert car.connected.wait(5)
        car.close()
        assert (tmp_path / "data" / "broker" / "mosquitto.conf").is_file()
        children = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert wait_until(lambda: not any(_alive(c) for c in children), 5)
    finally:
        if proc.poll() is None:
            proc.kill()
