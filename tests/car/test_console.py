"""The operator console: donkeycar's HTTP/websocket contract, pitlane's page and assets, and a real
headless chromium driving the twin's car by keyboard and stopping it with the STOP button."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request

import pytest

from pitlane.car.app import build_car
from pitlane.car.console import MJPEG_BOUNDARY, ConsoleTelemetry, WebController

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def wait_until(predicate, timeout_s: float = 10.0, period_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period_s)
    return predicate()


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read()


def test_console_page_assets_status_and_donkeycars_post_contract():
    web = WebController(port=0, mode="user", address="127.0.0.1", stop_button="w7")
    thread = threading.Thread(target=web.update, daemon=True)
    thread.start()
    try:
        assert web.ready.wait(5) and web.bound_port
        base = f"http://127.0.0.1:{web.bound_port}"
        status, kind, body = _get(f"{base}/drive")
        assert status == 200 and b"pitlane" in body and b"/static/console.js" in body
        for asset, mime in (("console.js", "javascript"), ("console.css", "text/css")):
            status, kind, body = _get(f"{base}/static/{asset}")
            assert status == 200 and mime in kind and len(body) > 1000
        # donkeycar's POST /drive: angle, throttle, mode, recording, buttons
        body = json.dumps({"angle": 0.25, "throttle": 0.4, "drive_mode": "local", "recording": True}).encode()
        urllib.request.urlopen(
            urllib.request.Request(f"{base}/drive", data=body, method="POST"), timeout=5
        ).close()
        angle, throttle, mode, recording, _buttons = web.run_threaded(None, 3, None, None)
        assert (angle, throttle, mode, recording) == (0.25, 0.4, "local", True)
        status = json.loads(_get(f"{base}/status")[2])
        assert (status["mode"], status["recording"], status["num_records"]) == ("local", True, 3)
        assert status["buttons"] == {"stop": "w7", "resume": "w2"}
        # the stop button zeroes the throttle in the same loop, whatever the last drive message said
        body = json.dumps({"throttle": 0.6, "buttons": {"w7": True}}).encode()
        urllib.request.urlopen(
            urllib.request.Request(f"{base}/drive", data=body, method="POST"), timeout=5
        ).close()
        _angle, throttle, _mode, _rec, buttons = web.run_threaded(None, 3, None, None)
        assert throttle == 0.0 and buttons == {"w7": True}
    finally:
        web.shutdown()
        thread.join(5)
    assert not thread.is_alive()


def test_video_is_mjpeg_with_a_placeholder_before_the_first_frame():
    """donkeycar's /video answers 500 with the 5.4.0 wheel (its placeholder JPEG is not shipped)."""
    web = WebController(port=0, address="127.0.0.1")
    thread = threading.Thread(target=web.update, daemon=True)
    thread.start()
    try:
        assert web.ready.wait(5)
        with urllib.request.urlopen(f"http://127.0.0.1:{web.bound_port}/video", timeout=5) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}"
            head = resp.read(120)
        assert head.startswith(f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\n".encode())
        assert b"\xff\xd8\xff" in head  # a JPEG starts
    finally:
        web.shutdown()
        thread.join(5)


class SteadyPilot:
    """A pilot part (donkeycar's run(image) -> angle, throttle) that holds one gentle left curve."""

    ANGLE, THROTTLE = -0.25, 0.2

    def run(self, image):
        return self.ANGLE, self.THROTTLE


def test_telemetry_shows_the_model_managers_keys_and_the_watchdog():
    """model/digest, model/serial, model/state, model/error: what the model manager part outputs."""
    web = WebController(port=0)
    clock = iter([10.0, 10.05, 10.10])
    telemetry = ConsoleTelemetry(web, profile="pi", model="pilot.tflite")
    telemetry.clock = lambda: next(clock)
    assert ConsoleTelemetry.INPUTS[-4:] == ["model/digest", "model/serial", "model/state", "model/error"]
    telemetry.run(0.1, 0.0, True, "stale_frame", None, None, "sha256:ab12", 7, "running", None)
    telemetry.run(0.1, 0.0, True, "stale_frame", None, None, "sha256:ab12", 7, "running", None)
    telemetry.run(0.1, float("nan"), True, "stale_frame", None, None, "sha256:ab12", 7, "rolled_back", "bad")
    t = web.telemetry
    assert t["model"] == {
        "file": "pilot.tflite",
        "digest": "sha256:ab12",
        "serial": 7,
        "state": "rolled_back",
        "error": "bad",
    }
    assert t["watchdog"] == {"stopped": True, "reason": "stale_frame"}
    assert t["loop_hz"] == 20.0 and t["throttle"] is None  # NaN is not JSON: shown as unknown
    assert t["speed_m_s"] is None and t["laps"] is None and t["profile"] == "pi"
    json.dumps(t)


def test_port_in_use_is_one_log_line_and_no_thread_traceback(caplog):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        web = WebController(port=port, address="127.0.0.1")
        errors: list = []
        previous, threading.excepthook = threading.excepthook, errors.append
        try:
            thread = threading.Thread(target=web.update, daemon=True)
            thread.start()
            thread.join(5)
        finally:
            threading.excepthook = previous
    assert web.ready.is_set() and web.bound_port is None and errors == []
    assert (
        f"operator console cannot listen on port {port}" in caplog.text
        and "driving on without it" in caplog.text
    )


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1200,900")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def _failed_requests(driver) -> list[str]:
    """Requests that failed or answered >= 400, from chromium's network log; console errors too."""
    failed = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
            failed.append(f"{params['response']['status']} {params['response']['url']}")
        elif message["method"] == "Network.loadingFailed":
            failed.append(f"failed: {params.get('errorText')} ({params.get('type')})")
    failed += [f"console: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return failed


@pytest.mark.slow
def test_browser_drives_the_twin_by_keyboard_records_and_stops(car_config, twin, tmp_path):
    """A real chromium loads the console with no failed request, the up arrow drives the twin's car, the
    record switch counts records, the STOP button stops the car (the watchdog's operator stop), resume and
    the touch joystick drive again, and the mode buttons hand the car to the pilot.

    PITLANE_CONSOLE_SCREENSHOT=PATH saves a screenshot of the page while the car drives (docs/console.png).
    """
    driver = _browser()
    car = build_car(
        car_config(twin.port, WEB_INIT_MODE="user"), None, pilot=SteadyPilot(), tub_path=tmp_path / "tub"
    )
    loop = threading.Thread(target=car.start, daemon=True)
    loop.start()
    try:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        assert car.web.ready.wait(10)
        part = car.twin
        assert part is not None
        driver.get(f"http://127.0.0.1:{car.web.bound_port}/drive")
        text = lambda element_id: driver.find_element(By.ID, element_id).text  # noqa: E731
        assert wait_until(lambda: text("link") == "connected" and text("twin") == "connected")
        assert wait_until(
            lambda: driver.execute_script("return document.getElementById('video').naturalWidth") > 0
        )
        assert _failed_requests(driver) == []

        start = dict(part.telemetry)
        driver.find_element(By.ID, "record").click()
        ActionChains(driver).key_down(Keys.ARROW_UP).perform()
        assert wait_until(lambda: part.last_control[1] > 0.0)
        assert wait_until(lambda: float(part.telemetry.get("speed", 0.0)) > 0.5)

        def moved() -> float:
            now = part.telemetry
            return abs(now["pos_x"] - start["pos_x"]) + abs(now["pos_z"] - start["pos_z"])

        assert wait_until(lambda: moved() > 0.3), "the car moved in the twin"
        assert wait_until(lambda: int(text("records")) > 0 and text("speed").endswith("m/s"))
        assert text("watchdog") == "watchdog ok"
        shot = os.environ.get("PITLANE_CONSOLE_SCREENSHOT")
        if shot:
            driver.save_screenshot(shot)

        driver.find_element(By.ID, "stop").click()  # the arrow key is still held down
        assert wait_until(lambda: part.last_control == (0.0, 0.0, 1.0), timeout_s=2.0)
        assert car.vehicle.mem["watchdog/reason"] == "operator_stop"
        assert wait_until(lambda: text("watchdog") == "STOPPED: operator_stop")
        assert wait_until(lambda: float(part.telemetry.get("speed", 1.0)) < 0.05)
        ActionChains(driver).key_up(Keys.ARROW_UP).perform()

        driver.find_element(By.ID, "resume").click()
        assert wait_until(lambda: text("watchdog") == "watchdog ok")
        joystick = driver.find_element(By.ID, "joy")
        ActionChains(driver).click_and_hold(joystick).move_by_offset(0, -60).perform()  # stick pushed forward
        assert wait_until(lambda: part.last_control[1] > 0.0 and part.last_control[2] == 0.0)
        ActionChains(driver).release().perform()  # it springs back: throttle 0
        assert wait_until(lambda: part.last_control[:2] == (0.0, 0.0))

        driver.find_element(By.CSS_SELECTOR, "button[data-mode='local']").click()
        assert wait_until(lambda: part.last_control[0] == SteadyPilot.ANGLE)  # the pilot steers
        assert wait_until(lambda: text("latency").endswith(" ms"))
        assert "active" in driver.find_element(By.CSS_SELECTOR, "button[data-mode='local']").get_attribute(
            "class"
        )
        assert _failed_requests(driver) == []
    finally:
        driver.quit()
        car.vehicle.on = False
        loop.join(10)
    # (a loaded machine may add a stale_frame stop; the operator's is the one this test makes)
    assert "operator_stop" in [e.reason for e in car.watchdog.events]
