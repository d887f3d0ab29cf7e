"""The car app drives the twin with a trained model; bad models and bad pilot outputs never move the car."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request

import pytest
from helpers import free_port, wait_until

from pitlane.car.app import build_car
from pitlane.car.run import RunOptions, run_car
from pitlane.cli import main as pitlane_main
from pitlane.errors import UserError
from pitlane.evaluate.report import END_TIME_LIMIT, SCHEMA, load_report
from pitlane.pilots.watchdog import PILOT_NONFINITE


def _get(url: str, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.slow
def test_car_app_drives_a_lap_in_local_mode_records_a_tub_and_serves_drive(trained_model, twin, tmp_path):
    web_port = free_port()
    result: dict = {}
    opts = RunOptions(
        model=str(trained_model),
        mode="local",
        duration_s=35.0,
        port=twin.port,
        web_port=web_port,
        report_dir=str(tmp_path / "run"),
        # this test is about driving and recording, not the stale-frame stop (tests/car/test_app.py and
        # tests/pilots/test_watchdog.py): on a loaded 2-core CI machine one frame can arrive 260 ms late
        overrides={"WATCHDOG_MAX_FRAME_AGE_S": 1.0},
    )
    runner = threading.Thread(target=lambda: result.update(report=run_car(opts)), daemon=True)
    runner.start()
    assert _get(f"http://127.0.0.1:{web_port}/drive", timeout_s=120.0) == 200  # TensorFlow loads first
    runner.join(120)
    report = result["report"]
    # the same Report schema as `pitlane evaluate`, with the car block filled
    assert report == load_report(tmp_path / "run")
    assert report.schema == SCHEMA and report.end_reason == END_TIME_LIMIT and report.laps_requested == 0
    assert report.laps_completed >= 1, report
    assert report.mean_abs_cte < 0.5, report
    assert report.car is not None and 15.0 <= report.car.loop_hz <= 21.0, report
    assert report.control_hz == 20.0 and report.model_digest.startswith("sha256:")
    assert report.car.stops == [] and report.car.tub_records > 100
    assert all((tmp_path / "run" / name).is_file() for name in report.plots) and len(report.plots) == 2
    # the tub it recorded passes pitlane's tub checker
    assert pitlane_main(["data", "check", report.car.tub]) == 0


@pytest.mark.slow
def test_cli_run_reports_and_refuses_a_broken_model(tmp_path, capsys):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a model at all")
    code = pitlane_main(
        ["car", "run", "--model", str(bad), "--port", "0", "--web-port", "0", "--max-seconds", "1"]
    )
    assert code == 2
    assert "refusing to drive in local mode" in capsys.readouterr().err


@pytest.mark.slow
def test_broken_model_refuses_autopilot_and_stays_drivable_by_hand(car_config, twin, tmp_path, caplog):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a model at all")
    car = build_car(car_config(twin.port, WEB_INIT_MODE="local"), bad, record=False)
    assert car.twin is not None and car.autopilot_refusal is not None
    assert car.pilot is None and car.autopilot_refusal.startswith("model failed to load")
    car.web.mode, car.web.throttle = "local", 0.5  # the operator asks for autopilot, then drives
    car.start(max_loop_count=40)
    assert car.vehicle.mem["user/mode"] == "user"
    assert "autopilot refused (local)" in caplog.text
    assert car.twin.telemetry["speed"] > 0.2


class FailingPilot:
    """A pilot that drives well for a while, then returns NaN (a broken model)."""

    def __init__(self, good_loops: int) -> None:
        self.calls = 0
        self.good_loops = good_loops

    def run(self, image):
        self.calls += 1
        return (0.0, 0.4) if self.calls <= self.good_loops else (math.nan, math.nan)


class Probe:
    """Last part of the loop: what the pilot said and what the twin was sent in the same loop."""

    def __init__(self, twin) -> None:
        self.twin = twin
        self.rows: list = []

    def run(self, pilot_throttle, stopped):
        self.rows.append((pilot_throttle, stopped, self.twin.last_control))


def test_nan_pilot_output_brakes_the_twin_car_in_the_same_loop(car_config, twin):
    car = build_car(car_config(twin.port, WEB_INIT_MODE="local"), None, pilot=FailingPilot(20), record=False)
    probe = Probe(car.twin)
    car.vehicle.add(probe, inputs=["pilot/throttle", "watchdog/stopped"])
    car.start(max_loop_count=30)
    good, bad = probe.rows[:20], probe.rows[20:]
    assert all(not stopped and sent[1] == pytest.approx(0.4) for _, stopped, sent in good)
    assert all(math.isnan(p) and stopped and sent[1:] == (0.0, 1.0) for p, stopped, sent in bad)
    assert [e.reason for e in car.watchdog.events] == [PILOT_NONFINITE]


def test_run_without_a_model_in_local_mode_is_refused(tmp_path):
    with pytest.raises(UserError, match="no model given"):
        run_car(RunOptions(model=None, port=0, web_port=0, duration_s=1.0))


def test_run_checks_its_options(tmp_path):
    with pytest.raises(UserError, match="--max-seconds must be a positive"):
        run_car(RunOptions(model=None, duration_s=0))
    with pytest.raises(UserError, match="drives the twin"):
        run_car(RunOptions(model=None, profile="pi"))
    with pytest.raises(UserError, match="model .*missing.tflite does not exist"):
        run_car(RunOptions(model=str(tmp_path / "missing.tflite"), port=0, web_port=0))


def _post(web, body: dict) -> None:
    """donkeycar's POST /drive, as a client holding the car's console token."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{web.bound_port}/drive",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {web.console.token}"},
    )
    urllib.request.urlopen(req, timeout=5).close()


def test_operator_stop_button_on_the_web_page_stops_the_twin_car(car_config, twin):
    car = build_car(car_config(twin.port, WEB_INIT_MODE="user"), None, record=False)
    loop = threading.Thread(target=car.start, daemon=True)
    loop.start()
    try:
        assert car.web.ready.wait(10)
        part = car.twin
        assert part is not None
        _post(car.web, {"angle": 0.0, "throttle": 0.5})
        assert wait_until(lambda: part.last_control == (0.0, 0.5, 0.0))
        _post(car.web, {"buttons": {"w1": True}})  # the page's w1 button: operator stop
        assert wait_until(lambda: part.last_control == (0.0, 0.0, 1.0))
        assert car.vehicle.mem["watchdog/reason"] == "operator_stop"
        time.sleep(0.3)
        assert part.last_control == (0.0, 0.0, 1.0), "an operator stop holds until resumed"
        _post(car.web, {"buttons": {"w2": True}})  # w2: resume
        assert wait_until(lambda: part.last_control == (0.0, 0.0, 0.0)), "the stop zeroed the throttle"
        _post(car.web, {"angle": 0.0, "throttle": 0.5})  # the operator drives again
        assert wait_until(lambda: part.last_control == (0.0, 0.5, 0.0))
    finally:
        car.vehicle.on = False
        loop.join(10)
    assert [e.reason for e in car.watchdog.events] == ["operator_stop"]


def test_nan_pilot_with_recording_on_keeps_the_loop_and_counts_what_it_skipped(tmp_path):
    report = run_car(
        RunOptions(
            model=None,
            pilot=FailingPilot(good_loops=15),
            mode="local",
            duration_s=2.0,
            port=0,
            web_port=0,
            report_dir=str(tmp_path / "run"),
            plots=False,
        )
    )
    car = report.car
    assert car is not None and car.loop_error is None, report
    assert report.nonfinite_outputs > 10 and car.records_skipped_nonfinite > 10, report
    assert 10 <= car.tub_records <= 15 and car.stop_counts == {PILOT_NONFINITE: 1}
    assert all(0.0 <= s["time"] <= report.wall_seconds for s in car.stops), car.stops
    assert car.tub is not None and pitlane_main(["data", "check", car.tub]) == 0


class BrokenPartPilot:
    """A pilot whose output donkeycar cannot store: the part after it raises and the loop dies."""

    def run(self, image):
        return (0.0,)  # one value for two outputs: donkeycar's Memory.put raises IndexError


def test_car_run_exits_1_with_a_true_report_when_the_loop_dies(tmp_path, capsys, monkeypatch):
    import pitlane.car.app as app

    monkeypatch.setattr(app, "load_pilot", lambda *a, **k: (BrokenPartPilot(), None))
    (tmp_path / "any.tflite").write_bytes(b"never loaded: load_pilot is replaced")
    argv = [
        "car",
        "run",
        "--model",
        str(tmp_path / "any.tflite"),
        "--port",
        "0",
        "--web-port",
        "0",
        "--max-seconds",
        "5",
    ]
    code = pitlane_main([*argv, "--out", str(tmp_path / "run"), "--no-plots"])
    assert code == 1
    assert "pitlane: the drive loop died: IndexError" in capsys.readouterr().err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["car"]["loop_error"].startswith("IndexError") and report["wall_seconds"] < 5.0
    stops = report["car"]["stops"]
    assert all(0.0 <= s["time"] <= report["wall_seconds"] + 0.5 for s in stops), stops
