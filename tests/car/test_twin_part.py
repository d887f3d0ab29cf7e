"""The twin part speaks the simulator protocol with DonkeyGymEnv's outputs, and survives the twin going away."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from helpers import free_port, wait_until

from pitlane.car.app import build_car
from pitlane.car.twin_part import TwinPart
from pitlane.errors import UserError
from pitlane.pilots.watchdog import STALE_FRAME
from pitlane.twin.server import TwinServer


def test_outputs_match_donkey_gym_env_with_sim_record_location(twin):
    part = TwinPart("127.0.0.1", twin.port, record_location=True, record_velocity=True)
    thread = threading.Thread(target=part.update, daemon=True)
    thread.start()
    try:
        frame, x, y, z, speed, cte, vx, vy, vz = part.run_threaded()
        assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
        assert all(isinstance(v, float) for v in (x, y, z, speed, cte, vx, vy, vz))
        for _ in range(30):
            part.controls_part().run(0.0, 0.5, 0.0)
            time.sleep(0.02)
        assert wait_until(lambda: part.run_threaded()[4] > 0.3), "the car did not move under throttle"
        assert part.last_control == (0.0, 0.5, 0.0)
    finally:
        part.shutdown()
        thread.join(5)


def test_frame_only_like_donkey_gym_env_without_record_flags(twin):
    part = TwinPart("127.0.0.1", twin.port, image_w=64, image_h=48)
    try:
        assert part.run_threaded().shape == (48, 64, 3)
    finally:
        part.shutdown()


def test_unknown_scene_is_a_clear_error(twin):
    with pytest.raises(UserError, match="has no scene 'moon_base'; it offers .*generated_track"):
        TwinPart("127.0.0.1", twin.port, scene="moon_base")


def test_no_twin_at_start_the_car_waits_stopped_and_says_so(caplog):
    port = free_port()
    with caplog.at_level(logging.WARNING):
        part = TwinPart("127.0.0.1", port, connect_timeout_s=0.5)
    assert not part.connected and part.run_threaded() is None
    assert f"no twin at 127.0.0.1:{port} yet" in caplog.text and "keeps trying" in caplog.text
    assert part.send_control(0.0, 1.0) is False
    part.shutdown()


def test_twin_going_away_mid_drive_stops_the_car_then_reconnects(car_config, caplog):
    server = TwinServer("127.0.0.1", port=0).start()
    port = server.port
    car = build_car(car_config(port, WEB_INIT_MODE="user"), None, record=False)
    part = car.twin
    assert part is not None
    car.web.throttle = 0.4  # the operator drives by hand
    loop = threading.Thread(target=car.start, daemon=True)
    caplog.set_level(logging.INFO)
    loop.start()
    try:
        assert wait_until(lambda: part.telemetry.get("speed", 0.0) > 0.2), "car never moved"
        server.stop()
        # the watchdog sees frames stop arriving and stops the car; the part says the twin went away
        assert wait_until(lambda: car.vehicle.mem["watchdog/reason"] == STALE_FRAME)
        assert car.vehicle.mem["throttle"] == 0.0
        assert f"twin at 127.0.0.1:{port} went away" in caplog.text
        server = TwinServer("127.0.0.1", port=port).start()
        assert wait_until(lambda: part.reconnects == 1 and not car.vehicle.mem["watchdog/stopped"], 15)
        assert "twin back at" in caplog.text
        assert wait_until(lambda: part.telemetry.get("speed", 0.0) > 0.2), "car did not drive on"
    finally:
        car.vehicle.on = False
        loop.join(10)
        server.stop()
    assert [e.reason for e in car.watchdog.events] == [STALE_FRAME]
