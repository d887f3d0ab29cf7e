"""The operator console: donkeycar's HTTP/websocket contract for clients that log in, pitlane's page and
assets, every attack of the threat model (docs/threat-model.md, "Console") performed against a real tornado
server and refused, and a real headless chromium logging in, driving the twin's car by keyboard and
stopping it with the STOP button."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time

import pytest
import requests
from console_clients import Socket, cookie_header, login, stream_body, ws_url
from tornado.httpclient import HTTPClientError

from pitlane.car.app import build_car
from pitlane.car.console import MJPEG_BOUNDARY, ConsoleTelemetry, WebController
from pitlane.car.console_auth import ConsoleSettings
from pitlane.car.model_manager import MEMORY_KEYS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "test-console-token-0123456789"


def wait_until(predicate, timeout_s: float = 10.0, period_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(period_s)
    return predicate()


class Console:
    """A WebController serving on 127.0.0.1 (any port) in its own thread, as the car runs it."""

    def __init__(self, **kwargs) -> None:
        settings = kwargs.pop("settings", ConsoleSettings(token=TOKEN, allowed_hosts=("mycar.lan",)))
        self.web = WebController(port=0, address="127.0.0.1", settings=settings, **kwargs)
        self.thread = threading.Thread(target=self.web.update, daemon=True)
        self.thread.start()
        assert self.web.ready.wait(5) and self.web.bound_port
        self.port = self.web.bound_port
        self.base = f"http://127.0.0.1:{self.port}"

    def loop(self, watchdog_reason: str | None = None):
        """One drive-loop call of the part: (angle, throttle, mode, recording, buttons)."""
        return self.web.run_threaded(None, 3, None, None, watchdog_reason)

    def stop(self) -> None:
        self.web.shutdown()
        self.thread.join(5)


@pytest.fixture()
def console():
    served = Console(stop_button="w7")
    yield served
    served.stop()
    assert not served.thread.is_alive()


def BEARER_OF(token: str) -> dict[str, str]:  # noqa: N802
    return {"Authorization": f"Bearer {token}"}


BEARER = BEARER_OF(TOKEN)


def test_page_assets_status_and_donkeycars_post_contract_after_login(console):
    base, web = console.base, console.web
    page = requests.get(f"{base}/drive", timeout=5)  # the page is public: it logs in itself
    assert page.status_code == 200 and b"pitlane" in page.content and b"/static/console.js" in page.content
    assert b'id="login-form"' in page.content
    for asset, mime in (("console.js", "javascript"), ("console.css", "text/css")):
        answer = requests.get(f"{base}/static/{asset}", timeout=5)
        assert (
            answer.status_code == 200
            and mime in answer.headers["Content-Type"]
            and len(answer.content) > 1000
        )
    assert requests.get(f"{base}/session", timeout=5).json() == {"logged_in": False}
    operator = login(base, TOKEN)
    assert operator.get(f"{base}/session", timeout=5).json()["logged_in"] is True
    # donkeycar's POST /drive: angle, throttle, mode, recording, buttons (throttle within the cap)
    body = {"angle": 0.25, "throttle": 0.4, "drive_mode": "local", "recording": True}
    assert operator.post(f"{base}/drive", json=body, timeout=5).status_code == 200
    angle, throttle, mode, recording, _buttons = console.loop()
    assert (angle, throttle, mode, recording) == (0.25, 0.4, "local", True)
    status = operator.get(f"{base}/status", timeout=5).json()
    assert (status["mode"], status["recording"], status["num_records"]) == ("local", True, 3)
    assert status["buttons"] == {"stop": "w7", "resume": "w2"}
    assert status["console"]["you_drive"] is True and status["console"]["driver"] == operator.label
    assert status["console"]["user_max_throttle"] == 0.5
    # the stop button zeroes the throttle in the same loop, whatever the last drive message said
    body = {"throttle": 0.6, "buttons": {"w7": True}}
    assert operator.post(f"{base}/drive", json=body, timeout=5).status_code == 200
    _angle, throttle, _mode, _rec, buttons = console.loop()
    assert throttle == 0.0 and buttons == {"w7": True}
    assert web.wheel.stoppers  # latched: the watchdog holds it until resumed


def test_bearer_token_clients_keep_donkeycars_contract(console):
    """donkeycar's tools and mobile/gamepad clients: Authorization: Bearer on POST /drive (any body type,
    they cannot be forged cross-site), Bearer or ?token= on the websockets; no cookie, no CSRF token."""
    base = console.base
    data = json.dumps({"angle": -0.5, "throttle": 0.2})  # donkeycar's page posts it form-encoded
    answer = requests.post(f"{base}/drive", data=data, headers=BEARER, timeout=5)
    assert answer.status_code == 200 and answer.json()["you_drive"] is True
    assert console.loop()[:2] == (-0.5, 0.2)
    assert requests.get(f"{base}/status", headers=BEARER, timeout=5).status_code == 200
    assert requests.post(f"{base}/drive", json={"release": True}, headers=BEARER, timeout=5).ok
    for socket in (Socket(ws_url(base, token=TOKEN)), Socket(ws_url(base), headers=BEARER)):
        hello = socket.recv()
        assert hello["client"].startswith("client ") and hello["you_drive"] is False
        socket.send({"angle": 0.1, "throttle": 0.3})
        assert wait_until(lambda: console.loop()[:2] == (0.1, 0.3))
        socket.close()  # it leaves: the wheel is free, the car keeps no throttle
        assert wait_until(lambda: console.web.wheel.driver is None and console.loop()[:2] == (0.0, 0.0))


def test_video_is_mjpeg_with_a_placeholder_before_the_first_frame(console):
    """donkeycar's /video answers 500 with the 5.4.0 wheel (its placeholder JPEG is not shipped)."""
    assert requests.get(f"{console.base}/video", timeout=5).status_code == 401  # the camera is the car's
    with requests.get(f"{console.base}/video", headers=BEARER, stream=True, timeout=5) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}"
        head = resp.raw.read(120)
    assert head.startswith(f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\n".encode())
    assert b"\xff\xd8\xff" in head  # a JPEG starts


# ---- the attacks of the threat model, each refused ----------------------------------------------------


def test_a_tokenless_post_changes_nothing(console):
    base = console.base
    for body in ({"throttle": 0.4}, {"buttons": {"w2": True}}, {"drive_mode": "local"}):
        answer = requests.post(f"{base}/drive", json=body, timeout=5)
        assert answer.status_code == 401 and "log in first" in answer.json()["error"]
    for path in ("/status", "/video"):
        assert requests.get(base + path, timeout=5).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    assert requests.post(f"{base}/drive", json={"throttle": 0.4}, headers=wrong, timeout=5).status_code == 401
    assert console.loop()[:2] == (0.0, 0.0) and console.web.buttons == {}


def test_a_wrong_token_is_refused_and_guessing_is_limited(console):
    base = console.base
    answer = requests.post(f"{base}/login", json={"token": "guess-guess-guess-guess"}, timeout=5)
    assert answer.status_code == 403 and "wrong token" in answer.json()["error"]
    assert "Set-Cookie" not in answer.headers
    for _ in range(9):
        requests.post(f"{base}/login", json={"token": "guess-guess-guess-guess"}, timeout=5)
    limited = requests.post(f"{base}/login", json={"token": TOKEN}, timeout=5)  # even the right one, now
    assert limited.status_code == 429 and "wait a minute" in limited.json()["error"]


def test_the_session_cookie_is_signed_httponly_and_samesite_strict(console):
    answer = requests.post(f"{console.base}/login", json={"token": TOKEN}, timeout=5)
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("pitlane_session=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "expires" not in cookie.lower()  # a browser-session cookie
    forged = {"Cookie": "pitlane_session=" + cookie.split(";")[0].split("=", 1)[1][:-4] + "AAAA"}
    assert requests.get(f"{console.base}/status", headers=forged, timeout=5).status_code == 401


def test_a_cross_site_text_plain_post_is_refused(console):
    """CSRF: a hostile page's form or fetch (text/plain, no preflight). Its browser would not even send the
    SameSite=Strict cookie; sent anyway, the POST still lacks the CSRF header and the JSON type."""
    base = console.base
    operator = login(base, TOKEN)
    cookie = cookie_header(operator)
    text_plain = {**cookie, "Content-Type": "text/plain"}
    body = json.dumps({"throttle": 0.4})
    cases = [
        ({**cookie, "Content-Type": "text/plain", "Origin": "http://evil.example"}, "is not this console"),
        ({**text_plain, "Sec-Fetch-Site": "cross-site"}, "cross-site request"),
        (text_plain, "application/json"),
        ({**cookie, "Content-Type": "application/json"}, "X-Pitlane-CSRF"),
        ({**cookie, "Content-Type": "application/json", "X-Pitlane-CSRF": "forged"}, "X-Pitlane-CSRF"),
    ]
    for headers, why in cases:
        answer = requests.post(f"{base}/drive", data=body, headers=headers, timeout=5)
        assert answer.status_code == 403 and why in answer.json()["error"], (headers, answer.text)
    assert requests.post(f"{base}/logout", data="{}", headers=text_plain, timeout=5).status_code == 403
    evil_login = {"Origin": "http://evil.example"}
    assert (
        requests.post(f"{base}/login", json={"token": TOKEN}, headers=evil_login, timeout=5).status_code
        == 403
    )
    assert console.loop()[:2] == (0.0, 0.0)
    assert (
        operator.post(f"{base}/drive", json={"throttle": 0.4}, timeout=5).status_code == 200
    )  # the page's way


def test_a_wrong_host_header_is_refused(console):
    """DNS rebinding: a hostile name resolving to the car reaches it with that name as Host."""
    base, port = console.base, console.port
    evil = {"Host": f"evil.example:{port}"}
    for method, path in (
        ("GET", "/drive"),
        ("GET", "/status"),
        ("POST", "/login"),
        ("GET", "/static/console.js"),
    ):
        answer = requests.request(
            method, base + path, headers={**evil, **BEARER}, json={"token": TOKEN}, timeout=5
        )
        assert answer.status_code == 403 and "WEB_ALLOWED_HOSTS" in answer.json()["error"], path
    with pytest.raises(HTTPClientError) as refused:
        Socket(ws_url(base, token=TOKEN), headers=evil)
    assert refused.value.code == 403
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"MyCar.lan:{port}", f"[::1]:{port}", "10.0.0.7"):
        assert requests.get(f"{base}/drive", headers={"Host": host}, timeout=5).status_code == 200, host


def test_a_foreign_origin_websocket_is_refused(console):
    """Cross-site websocket hijacking: a hostile page opens ws://car/wsDrive with the operator's cookie."""
    base, port = console.base, console.port
    operator = login(base, TOKEN)
    for path in ("/wsDrive", "/wsCalibrate"):
        for origin in ("http://evil.example", "null", f"http://127.0.0.1.evil.example:{port}"):
            with pytest.raises(HTTPClientError) as refused:
                Socket(ws_url(base, path), headers={**cookie_header(operator), "Origin": origin})
            assert refused.value.code == 403, origin
        with pytest.raises(HTTPClientError) as refused:  # no session at all
            Socket(ws_url(base, path), headers={"Origin": f"http://127.0.0.1:{port}"})
        assert refused.value.code == 401
        own = Socket(
            ws_url(base, path), headers={**cookie_header(operator), "Origin": f"http://127.0.0.1:{port}"}
        )
        assert own.recv()["client"] == operator.label
        own.close()
    assert console.loop()[:2] == (0.0, 0.0)


def test_the_token_of_a_websocket_url_stays_out_of_the_logs(console, caplog):
    caplog.set_level("DEBUG")
    Socket(ws_url(console.base, token=TOKEN)).close()
    with pytest.raises(HTTPClientError):
        Socket(ws_url(console.base, token="wrong-wrong-wrong-wrong"))
    assert TOKEN not in caplog.text and "wrong-wrong" not in caplog.text
    assert "GET /wsDrive" in caplog.text and "wrong token from 127.0.0.1" in caplog.text


# every field of every request type, malformed: (message, words of the refusal)
MALFORMED = [
    ({"throttle": "abc"}, "throttle must be a finite number"),
    ({"throttle": float("nan")}, "throttle must be a finite number"),
    ({"throttle": 1e999}, "throttle must be a finite number"),
    ({"throttle": 1.5}, "throttle must be in [-1, 1]"),
    ({"throttle": True}, "throttle must be a finite number"),
    ({"angle": [0.1]}, "angle must be a finite number"),
    ({"angle": -2}, "angle must be in [-1, 1]"),
    ({"angle": {"x": 1}}, "angle must be a finite number"),
    ({"drive_mode": "warp"}, "drive_mode must be one of user, local_angle, local"),
    ({"drive_mode": 3}, "drive_mode must be one of"),
    ({"recording": "yes"}, "recording must be true or false"),
    ({"recording": 1}, "recording must be true or false"),
    ({"buttons": ["w1"]}, "buttons must be an object"),
    ({"buttons": {"w9": True}}, "unknown button 'w9'"),
    ({"buttons": {"w1": "pressed"}}, "button w1 must be true or false"),
    ({"release": "now"}, "release must be true or false"),
    ({"steer": 0.1}, "unknown field 'steer'"),
    ("[1, 2]", "a drive message is a JSON object"),
    ("{not json", "not JSON"),
    ("[" * 1500 + "]" * 1500, "not JSON"),  # deeper than Python's recursion limit, within 4 KiB
    ('{"throttle": NaN}', "throttle must be a finite number"),
]
MALFORMED_CALIBRATE = [
    ({"throttle": "abc"}, "throttle must be a finite number"),
    ({"angle": float("inf")}, "angle must be a finite number"),
    ({"config": {"STEERING_LEFT_PWM": 9999}}, "config (PWM pulses) cannot be set"),
    ({"drive_mode": "local"}, "unknown field 'drive_mode'"),
]


def _raw(message) -> str:
    return message if isinstance(message, str) else json.dumps(message)


def test_a_malformed_value_in_every_field_is_refused_and_changes_nothing(console):
    base = console.base
    before = console.loop()
    for message, why in MALFORMED:
        answer = requests.post(f"{base}/drive", data=_raw(message), headers=BEARER, timeout=5)
        assert answer.status_code == 400 and why in answer.json()["error"], (message, answer.text)
    for path, cases in (("/wsDrive", MALFORMED), ("/wsCalibrate", MALFORMED_CALIBRATE)):
        socket = Socket(ws_url(base, path, token=TOKEN))
        socket.recv()
        for message, why in cases:
            reply = socket.ask(_raw(message))
            assert reply is not None and why in reply["refused"], (path, message, reply)
        socket.send(b"\x00\x01binary")
        assert "not JSON" in socket.recv()["refused"]
        socket.close()
    assert console.loop() == before and console.web.wheel.driver is None


def test_a_second_driver_watches_and_resume_is_for_who_stopped(console):
    base, web = console.base, console.web
    alice, bob = Socket(ws_url(base, token=TOKEN)), Socket(ws_url(base, token=TOKEN))
    alice.recv(), bob.recv()
    alice.send({"angle": 0.2, "throttle": 0.3})
    assert wait_until(lambda: console.loop()[:2] == (0.2, 0.3))
    reply = bob.ask({"angle": -1.0, "throttle": 0.5, "drive_mode": "local"})
    assert "holds the wheel; you watch" in reply["refused"] and reply["driver"].startswith("client 1")
    assert bob.ask({"release": True, "throttle": 0.5})["refused"]  # releasing a wheel you do not hold
    assert console.loop()[:3] == (0.2, 0.3, "user")
    bob.send({"buttons": {"w7": True}})  # a watcher's STOP works
    assert wait_until(lambda: console.loop()[1] == 0.0 and web.wheel.stoppers)
    for intruder in (alice, Socket(ws_url(base, token=TOKEN))):
        if intruder is not alice:
            intruder.recv()
        reply = intruder.ask({"buttons": {"w2": True}})
        assert "only who pressed STOP" in reply["refused"], reply
    assert "w2" not in console.loop(watchdog_reason="operator_stop")[4]  # no resume reached the watchdog
    alice.send({"buttons": {"w7": True}})  # both stopped: both must resume
    assert "another client's STOP still holds" in bob.ask({"buttons": {"w2": True}})["refused"]
    alice.send({"buttons": {"w2": True}})
    assert wait_until(lambda: web.buttons.get("w2") is True)
    assert console.loop(watchdog_reason="operator_stop")[4]["w2"] is True and not web.wheel.stoppers
    alice.close()  # the driver leaves: the wheel is free, throttle 0, and the watcher may drive
    assert wait_until(lambda: web.wheel.driver is None)
    assert console.loop()[:2] == (0.0, 0.0)
    bob.send({"throttle": 0.1})
    assert wait_until(lambda: console.loop()[1] == 0.1)
    bob.close()


def test_the_physical_controller_resumes_whoever_stopped():
    console = Console()
    try:
        socket = Socket(ws_url(console.base, token=TOKEN))
        socket.recv()
        socket.send({"buttons": {"w1": True}})
        assert wait_until(lambda: console.web.wheel.stoppers)
        console.loop(watchdog_reason="")  # the loop hands the STOP to the watchdog now ...
        console.loop(watchdog_reason="operator_stop")  # ... which holds it
        assert console.web.wheel.stoppers
        console.loop(watchdog_reason="stale_frame")  # the watchdog resumed without the console
        assert console.web.wheel.stoppers == []
        assert "no STOP from the console" in socket.ask({"buttons": {"w2": True}})["refused"]
        socket.close()
    finally:
        console.stop()


def test_a_post_only_driver_lets_go_when_silent():
    now = [100.0]
    settings = ConsoleSettings(token=TOKEN, driver_idle_s=2.0)
    console = Console(settings=settings, clock=lambda: now[0])
    try:
        assert requests.post(f"{console.base}/drive", json={"throttle": 0.3}, headers=BEARER, timeout=5).ok
        now[0] += 1.5
        assert console.loop()[1] == 0.3 and console.web.wheel.driver is not None
        now[0] += 1.0
        assert console.loop()[1] == 0.0 and console.web.wheel.driver is None
    finally:
        console.stop()


def test_large_bodies_and_messages_are_refused_unread(console):
    """The body limit is tornado's (max_body_size, websocket_max_message_size): refused at the header."""
    huge = 90 * 2**20
    post = stream_body(console.port, huge)
    assert post["answer"].startswith("HTTP/1.1 400") and post["sent"] < huge
    frame = stream_body(console.port, huge, websocket=True, token=TOKEN)
    assert frame["sent"] < huge
    big = json.dumps({"angle": 0.1, "pad": "x" * 20000})
    answer = requests.post(f"{console.base}/drive", data=big, headers=BEARER, timeout=5)
    assert answer.status_code in (400, 413)
    socket = Socket(ws_url(console.base, token=TOKEN))
    socket.recv()
    socket.send(json.dumps({"angle": 0.1, "pad": "x" * 5000}))
    assert socket.recv() is None and socket.close_code == 1009  # message too big
    socket.close()


def test_video_viewers_are_bounded(console):
    """Each viewer costs the car a stream; a fifth is told to wait (the JPEG is encoded once for all)."""
    streams = [
        requests.get(f"{console.base}/video", headers=BEARER, stream=True, timeout=5) for _ in range(4)
    ]
    try:
        assert all(s.status_code == 200 for s in streams) and wait_until(lambda: console.web.viewers == 4)
        fifth = requests.get(f"{console.base}/video", headers=BEARER, timeout=5)
        assert fifth.status_code == 503 and "4 viewers already watch" in fifth.json()["error"]
    finally:
        for stream in streams:
            stream.close()
    assert wait_until(lambda: console.web.viewers == 0)


def test_every_answer_forbids_framing_and_sniffing(console):
    for path in ("/drive", "/static/console.js", "/session", "/status"):
        headers = requests.get(console.base + path, timeout=5).headers
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"


class SteadyPilot:
    """A pilot part (donkeycar's run(image) -> angle, throttle) that holds one gentle left curve."""

    ANGLE, THROTTLE = -0.25, 0.2

    def run(self, image):
        return self.ANGLE, self.THROTTLE


def test_telemetry_shows_the_model_managers_keys_and_the_watchdog():
    """model/digest, model/serial, model/state, model/error, model/freshness: the model manager's outputs."""
    web = WebController(port=0)
    clock = iter([10.0, 10.05, 10.10])
    telemetry = ConsoleTelemetry(web, profile="pi", model="pilot.tflite")
    telemetry.clock = lambda: next(clock)
    assert ConsoleTelemetry.INPUTS[-5:] == MEMORY_KEYS
    telemetry.run(0.1, 0.0, True, "stale_frame", None, None, "sha256:ab12", 7, "running", None, "current")
    telemetry.run(0.1, 0.0, True, "stale_frame", None, None, "sha256:ab12", 7, "running", None, "current")
    telemetry.run(
        0.1, float("nan"), True, "stale_frame", None, None, "sha256:ab12", 7, "rolled_back", "bad", "stale"
    )
    t = web.telemetry
    assert t["model"] == {
        "file": "pilot.tflite",
        "digest": "sha256:ab12",
        "serial": 7,
        "state": "rolled_back",
        "error": "bad",
        "freshness": "stale",
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


def _log_in_through_the_page(driver, base: str) -> None:
    """The page asks for the token; a wrong one is refused there (one 403), the right one opens the console."""
    from selenium.webdriver.common.by import By

    text = lambda element_id: driver.find_element(By.ID, element_id).text  # noqa: E731
    driver.get(f"{base}/drive")
    assert wait_until(lambda: driver.find_element(By.ID, "token").is_displayed())
    assert not driver.find_element(By.ID, "console").is_displayed()
    driver.find_element(By.ID, "token").send_keys("not-the-token-of-this-car")
    driver.find_element(By.ID, "login-button").click()
    assert wait_until(lambda: "wrong token" in text("login-error"))
    refused = _failed_requests(driver)  # the 403 and chromium's console line about it, nothing else
    assert refused[0] == f"403 {base}/login" and all("/login" in f for f in refused), refused
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "login-button").click()
    assert wait_until(lambda: driver.find_element(By.ID, "console").is_displayed())
    assert text("client").startswith("client ")


@pytest.mark.slow
def test_browser_drives_the_twin_by_keyboard_records_and_stops(car_config, twin, tmp_path):
    """A real chromium logs in through the console's page (a wrong token is refused there), loads the
    console with no other failed request, the up arrow drives the twin's car (the page holds the wheel: a
    second client is told it watches), the record switch counts records, the STOP button stops the car
    (the watchdog's operator stop), resume and the touch joystick drive again, and the mode buttons hand the
    car to the pilot.

    PITLANE_CONSOLE_SCREENSHOT=PATH saves a screenshot of the page while the car drives (docs/console.png).
    """
    driver = _browser()
    cfg = car_config(twin.port, WEB_INIT_MODE="user", WEB_CONSOLE_TOKEN=TOKEN)
    car = build_car(cfg, None, pilot=SteadyPilot(), tub_path=tmp_path / "tub")
    loop = threading.Thread(target=car.start, daemon=True)
    loop.start()
    try:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        assert car.web.ready.wait(10)
        part = car.twin
        assert part is not None
        base = f"http://127.0.0.1:{car.web.bound_port}"
        text = lambda element_id: driver.find_element(By.ID, element_id).text  # noqa: E731
        _log_in_through_the_page(driver, base)
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
        assert wait_until(lambda: text("wheel") == "you drive")
        watcher = requests.post(f"{base}/drive", json={"throttle": -0.5}, headers=BEARER_OF(TOKEN), timeout=5)
        assert watcher.status_code == 409 and "you watch" in watcher.json()["error"]
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
