"""The fleet part: heartbeats with every key, events at once (watchdog stop, model swap, rollback, refused),
a cheap loop side; and the car app with FLEET_* set sends them home and brings its tub home at stop."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import numpy as np
import pytest
from model_support import release_bundle, release_key

from pitlane.artifacts import bundle, oci
from pitlane.car.parts import SafePilot
from pitlane.data.framestats import frame_features, summarise
from pitlane.fleet import protocol
from pitlane.fleet import tubbundle as tb
from pitlane.fleet.part import FleetParams, FleetPart
from pitlane.fleet.spool import Spool
from pitlane.pilots.watchdog import WatchdogParams, WatchdogPart


class Clock:
    def __init__(self, t: float = 1_750_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Steady:
    """A pilot part that answers after `delay_s` (the latency the heartbeat reports)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def run(self, image):
        time.sleep(self.delay_s)
        return 0.0, 0.2


def records(spool: Spool, kind: str) -> list[protocol.Record]:
    return [protocol.parse_record(p.payload) for p in spool.pending(10_000) if p.kind == kind]


def make_part(tmp_path, **kw) -> FleetPart:
    params = FleetParams(car="car-1", broker="127.0.0.1:1", state_dir=tmp_path, data_path=str(tmp_path))
    params = dataclasses.replace(params, **kw.pop("params", {}))
    spool = Spool(tmp_path / "spool.db", "car-1")
    return FleetPart(params, spool, **kw)


def test_a_heartbeat_carries_every_key_from_the_loop(tmp_path):
    pilot = SafePilot(Steady(0.004))
    watchdog = WatchdogPart(WatchdogParams(loop_period_s=0.05))
    clock = Clock()
    part = make_part(tmp_path, pilot=pilot, watchdog=watchdog, clock=clock, params={"drift_every": 2})
    frame = np.full((120, 160, 3), 90, np.uint8)
    for i in range(21):
        pilot.run(frame)
        part.run_threaded(frame, "local", 0.1 * (-1) ** i)
        assert part.drift is not None
        part.drift.update()
        time.sleep(0.05)
    part.tick()
    [beat] = records(part.spool, protocol.HEARTBEAT)
    body = beat.body
    assert set(body) == set(protocol.HEARTBEAT_KEYS) and body["name"] == "car-1"
    assert 10 < body["loop_hz"] < 21  # 20 loops of 50 ms asked; a shared machine may be late
    assert 3.5 < body["pilot_ms"]["p50"] < 40 and body["pilot_ms"]["p99"] >= body["pilot_ms"]["p50"]
    assert body["twin"] == {"laps": None, "cte_mean": 0.1, "cte_max": 0.1}
    assert body["drift"] == {"score": None, "frames": 10, "baseline": "none"}
    assert body["model"]["running"] == {"digest": None, "serial": None, "state": "running"}
    assert body["mode"] == "local" and body["backlog"] == {"records": 0, "tubs": 0, "tub_records": 0}
    assert body["disk_free_mb"] > 0 and body["watchdog_stops"] == {}


def test_heartbeats_come_at_their_period_and_events_at_once(tmp_path):
    clock = Clock()
    watchdog = WatchdogPart(WatchdogParams(loop_period_s=0.05))
    part = make_part(tmp_path, watchdog=watchdog, clock=clock)
    frame = np.zeros((120, 160, 3), np.uint8)
    part.run(frame, "user", None)
    part.run(frame, "user", None)  # the same second: no second heartbeat
    assert len(records(part.spool, protocol.HEARTBEAT)) == 1
    watchdog.operator_stop()
    watchdog.run("user", 0.0, 0.3, None, None, frame)
    part.run(frame, "user", None)
    [stop] = records(part.spool, protocol.EVENT)
    assert stop.body == {
        "type": "watchdog_stop",
        "detail": {"reason": "operator_stop", "detail": stop.body["detail"]["detail"]},
    }
    clock.t += 1.0
    part.run(frame, "user", None)
    beats = records(part.spool, protocol.HEARTBEAT)
    assert len(beats) == 2 and beats[-1].body["watchdog_stops"] == {"operator_stop": 1}
    assert beats[-1].t == clock.t


# --- with the real model manager ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def signed(registry, models, tmp_path_factory):
    """Keys and three signed bundles: A (with its training frames' statistics), B, and one that outputs NaN."""
    from pitlane.provenance import run_record_path

    root = tmp_path_factory.mktemp("fleet-mm")
    key, pub = release_key(root)
    model_a = root / "a" / "pilot.tflite"
    model_a.parent.mkdir()
    model_a.write_bytes(models["a"].read_bytes())
    stats = summarise(np.stack([frame_features(np.full((120, 160, 3), 90, np.uint8))] * 4), "test frames")
    run_record_path(model_a).write_text(json.dumps({"tubs": [], "extra": {"frame_stats": stats}}))
    client = oci.Client(registry.host)
    a = bundle.pack(model_a, gate_report=None, serial=1)
    b = bundle.pack(models["b"], gate_report=None, serial=2)
    nan = b.replaced(bundle.TFLITE_NAME, models["nan"].read_bytes(), serial=3)  # loads, answers NaN
    repo = oci.Reference(registry.host, "fleet/pilot")
    refs = {
        name: release_bundle(client, packed, repo, key) for name, packed in (("a", a), ("b", b), ("nan", nan))
    }
    return pub, refs


@pytest.mark.slow
def test_model_swap_rollback_and_refusal_are_events_and_the_baseline_follows_the_model(signed, tmp_path):
    from pitlane.car.model_manager import ManagerParams, ModelManager

    pub, refs = signed
    ref_file = tmp_path / "model-ref"
    params = ManagerParams(
        public_key=pub, cache_dir=tmp_path / "cache", ref_file=ref_file, latency_budget_ms=500.0
    )

    def desire(name: str) -> None:
        ref_file.write_text(str(refs[name]) + "\n")

    desire("a")
    clock = Clock()
    manager = ModelManager(params, clock=clock)  # the heartbeat's differs_since is the manager's
    manager.check_once()
    manager.swap_if_ready()
    pilot = SafePilot(manager.pilot)
    part = make_part(tmp_path / "fleet", pilot=pilot, manager=manager, clock=clock)
    frame = np.full((120, 160, 3), 90, np.uint8)

    def loop() -> dict:
        """Five loops, then the next heartbeat's body."""
        pilot.run(frame)
        for _ in range(5):
            part.run(frame, "local", None, *manager.run_threaded())
        clock.t += 1.0
        part.run(frame, "local", None, *manager.run_threaded())
        return records(part.spool, protocol.HEARTBEAT)[-1].body

    body = loop()
    assert body["model"]["running"] == {"digest": refs["a"].digest, "serial": 1, "state": "running"}
    assert body["model"]["desired"] == str(refs["a"]) and body["model"]["differs_since"] is None
    assert body["drift"]["baseline"] == "bundle" and body["drift"]["score"] == 0.0  # the frames A trained on
    assert records(part.spool, protocol.EVENT) == []  # the model the car started with is no swap

    desire("b")
    manager.check_once()
    waiting_since = clock.t
    part.tick()  # the manager prepared B; A still drives: desired and running differ from now on
    assert part.heartbeat_body()["model"]["differs_since"] == waiting_since
    manager.swap_if_ready()
    body = loop()
    assert body["model"]["running"]["digest"] == refs["b"].digest and body["model"]["differs_since"] is None
    assert body["drift"]["baseline"] == "none"  # B carries no statistics

    assert manager.pilot.pilot is not None
    manager.pilot.pilot.run = lambda image: (float("nan"), float("nan"))  # B fails on the road
    for _ in range(params.max_loop_failures):
        manager.pilot.run(frame)
    body = loop()
    assert body["model"]["running"] == {"digest": refs["a"].digest, "serial": 1, "state": "rolled back"}
    rolled_back_at = body["model"]["differs_since"]  # B is still desired, A drives
    assert rolled_back_at is not None

    desire("nan")
    manager.check_once()  # its canary outputs are NaN: refused, A keeps driving
    body = loop()
    assert body["model"]["running"]["state"] == "refused" and body["model"]["differs_since"] == rolled_back_at
    events = [(e.body["type"], e.body["detail"]) for e in records(part.spool, protocol.EVENT)]
    assert [kind for kind, _ in events] == ["model_swap", "rollback", "refused"]
    assert events[0][1]["from"] == refs["a"].digest and events[0][1]["to"] == refs["b"].digest
    assert events[1][1]["to"] == refs["a"].digest and "in a row while driving" in events[1][1]["error"]
    assert "non-finite" in events[2][1]["error"] and events[2][1]["desired"] == str(refs["nan"])
    manager.shutdown()


# --- the car app ----------------------------------------------------------------------------------------------
@pytest.fixture
def twin():
    from pitlane.twin.server import TwinServer

    server = TwinServer("127.0.0.1", port=0).start()
    yield server
    server.stop()


@pytest.mark.slow
def test_the_car_app_reports_home_and_brings_its_tub_home_at_stop(
    tmp_path, twin, broker, responder, registry
):
    from pitlane.car.app import build_car
    from pitlane.car.settings import load_car_config

    car_name = f"car-app-{int(time.time() * 1000) % 10**9}"
    (tmp_path / "data").mkdir()
    cfg = load_car_config(
        profile="twin",
        overrides={
            "WEB_CONTROL_PORT": 0,
            "SIM_PORT": twin.port,
            "SIM_CONNECT_TIMEOUT_S": 5.0,
            "DATA_PATH": str(tmp_path / "data"),
            "AUTO_CREATE_NEW_TUB": True,
            "FLEET_BROKER": broker.address,
            "FLEET_CAR_NAME": car_name,
            "FLEET_GATEWAY": registry.host,  # the registry itself stands in for the NUC's gateway here
            "FLEET_STATE_DIR": str(tmp_path / "fleet"),
            "FLEET_HEARTBEAT_S": 0.5,
            "FLEET_STOP_BUDGET_S": 30.0,
        },
    )
    car = build_car(cfg, None)
    [part] = [e["part"] for e in car.vehicle.parts if isinstance(e["part"], FleetPart)]
    car.web.throttle = 0.3  # the operator drives: the car records
    threading.Timer(1.5, car.watchdog.operator_stop).start()
    car.start(max_loop_count=80)  # 4 s at 20 Hz; the vehicle's stop runs the part's shutdown
    stored = responder.stored(car_name)
    beats = [r for r in stored.values() if r.kind == protocol.HEARTBEAT]
    assert len(beats) >= 5
    last = beats[-1].body
    assert last["profile"] == "twin" and 10 < last["loop_hz"] < 25  # 20 Hz asked, on a shared machine
    # the operator's stop, counted once (a loaded machine may add stale_frame stops of its own)
    assert last["watchdog_stops"].get("operator_stop") == 1 and last["mode"] == "user"
    assert last["twin"]["laps"] == 0 and last["twin"]["cte_mean"] is not None
    assert last["drift"]["frames"] > 0 and last["drift"]["baseline"] == "none"
    events = [r.body for r in stored.values() if r.kind == protocol.EVENT]
    stops = [e["detail"]["reason"] for e in events if e["type"] == "watchdog_stop"]
    assert stops.count("operator_stop") == 1 and {e["type"] for e in events} == {"watchdog_stop"}
    [tub] = [r.body for r in stored.values() if r.kind == protocol.TUB]
    remote = tb.fetch(oci.Client(registry.host), oci.Reference.parse(tub["ref"]))
    assert remote.config["car"] == car_name and remote.config["records"] == tub["records"] > 20
    assert (
        Spool(tmp_path / "fleet" / "spool.db", car_name).count() == 0
    )  # all sent and acked before the stop ended
