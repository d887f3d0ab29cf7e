"""The fleet page: its JSON API from a real store, /metrics, and a real headless chromium that sees a car's
row appear and a model swap change it within 5 s, with the records going through Mosquitto and the ingest."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request

import pytest
from helpers import wait_until

from pitlane.fleet import broker as fb
from pitlane.fleet import protocol as p
from pitlane.fleet.ingest import Ingest, IngestConfig
from pitlane.fleet.store import Incoming, Store, TubEntry
from pitlane.fleet.view import car_row, downsample
from pitlane.fleet.web import FleetAPI, FleetWeb, WebConfig

from .nuc_support import BOOT, event, heartbeat, peer

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def swapped(
    car: str, seq: int, running: str, desired: str | None, differs_since=None, t=None, **values
) -> p.Record:
    model = {
        "running": {"digest": running, "serial": 4, "state": "running"},
        "desired": f"nuc:5000/models/pilot@{desired}" if desired else None,
        "differs_since": differs_since,
    }
    return heartbeat(car, seq, t=t, model=model, **values)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "fleet.db")
    yield s
    s.close()


def test_a_cars_row_says_what_runs_what_should_and_since_when(store):
    now = 1_000_000.0
    store.add([Incoming(swapped("car-1", 1, A, B, differs_since=now - 70, t=now - 10), now - 10)])
    store.add([Incoming(event("car-1", 2, "watchdog_stop", reason="stale_frame"), now - 8)])
    api = FleetAPI(store, known=lambda: {"car-1", "car-2"}, clock=lambda: now)
    car1, car2 = api.cars()["cars"]
    assert car1["name"] == "car-1" and car1["age_s"] == pytest.approx(8)
    assert not car1["online"] and not car1["healthy"]
    assert car1["model"]["differs"] and car1["model"]["differs_for_s"] == pytest.approx(70)
    assert car1["watchdog_stops"] == 1 and car1["last_event"]["type"] == "watchdog_stop"
    assert car1["loop_hz"] == 20.0 and car1["pilot_ms"] == {"p50": 2.0, "p99": 4.0}
    assert car2["name"] == "car-2" and car2["last_seen"] is None and not car2["healthy"]  # never heard from
    # the car reports the swap at once: the row shows it before the next heartbeat
    store.add([Incoming(event("car-1", 3, "model_swap", **{"from": A, "to": B, "serial": 5}), now - 2)])
    car1 = api.cars()["cars"][0]
    assert car1["model"]["running"]["digest"] == B and car1["model"]["running"]["serial"] == 5
    assert not car1["model"]["differs"]
    # the next heartbeat runs the desired model: healthy again, the stop now counted by the heartbeat
    store.add([Incoming(swapped("car-1", 4, B, B, t=now - 1, watchdog_stops={"stale_frame": 1}), now - 1)])
    car1 = api.cars()["cars"][0]
    assert car1["healthy"] and not car1["model"]["differs"] and car1["watchdog_stops"] == 1


def test_no_desired_model_is_not_a_difference_and_rows_survive_missing_figures():
    row = {
        "name": "car-1",
        "last_seen": 99.0,
        "heartbeat": {"model": None, "pilot_ms": None},
        "heartbeat_t": 99.0,
    }
    shown = car_row(row, 100.0)
    assert shown["healthy"] and shown["loop_hz"] is None and shown["model"]["running"] is None
    json.dumps(shown, allow_nan=False)


def test_history_is_downsampled_to_at_most_the_points_asked_for(store):
    now = 2_000_000.0
    store.add(
        [
            Incoming(heartbeat("car-1", s, t=now - 3600 + s, loop_hz=float(s % 20)), now - 3600 + s)
            for s in range(1, 3601)
        ]
    )
    api = FleetAPI(store, clock=lambda: now)
    doc = api.history("car-1", 3600, 100)
    assert len(doc["points"]) == 100 and doc["figures"][0] == "loop_hz"
    assert all(0 <= pt["loop_hz"] <= 19 for pt in doc["points"])
    assert doc["points"][-1]["t"] == pytest.approx(now)
    assert len(api.history("car-1", 60, 600)["points"]) == 61
    assert downsample([], ("loop_hz",), 10) == []


def test_tubs_are_listed_by_car_model_and_time(store):
    def tub(car, seq, start, model):
        body = {
            "ref": f"gw:5001/data/{car}@{A}",
            "session": f"s{seq}",
            "records": 10,
            "start": start,
            "end": start + 60,
            "model": model,
        }
        record = p.Record(car, seq, p.TUB, start, BOOT, body)
        digest = f"sha256:{seq:064d}"
        return Incoming(record, start + 70, TubEntry(f"reg:5000/data/{car}@{digest}", {"records": 10}))

    store.add([tub("car-1", 1, 100.0, A), tub("car-1", 2, 1000.0, B), tub("car-2", 1, 500.0, A)])
    api = FleetAPI(store)
    assert [t["session"] for t in api.tubs(None, None, None, None)["tubs"]] == ["s2", "s1", "s1"]
    assert [(t["car"], t["session"]) for t in api.tubs("car-1", A, None, None)["tubs"]] == [("car-1", "s1")]
    assert [t["car"] for t in api.tubs(None, None, 400.0, 700.0)["tubs"]] == ["car-2"]


def test_the_page_the_api_and_metrics_over_http(store):
    now = time.time()
    store.add([Incoming(swapped("car-1", 1, A, B, differs_since=now - 5, t=now), now)])
    store.refused("forged", "car-1", "x")
    web = FleetWeb(WebConfig(port=0), FleetAPI(store, known=lambda: {"car-1"})).start()
    try:

        def get(path):
            with urllib.request.urlopen(web.url + path, timeout=5) as resp:
                return resp.status, resp.headers["Content-Type"], resp.read()

        status, kind, body = get("/")
        assert status == 200 and "text/html" in kind and b"/static/fleet.js" in body
        for asset, mime in (("fleet.js", "javascript"), ("fleet.css", "text/css")):
            status, kind, body = get(f"/static/{asset}")
            assert status == 200 and mime in kind and len(body) > 1000
        doc = json.loads(get("/api/cars")[2])
        assert doc["cars"][0]["model"]["differs"] and doc["refused"] == {"forged": 1}
        assert json.loads(get("/api/cars/car-1/history")[2])["points"][0]["loop_hz"] == 20.0
        assert json.loads(get("/api/tubs")[2]) == {"tubs": []}
        text = get("/metrics")[2].decode()
        assert 'pitlane_fleet_loop_hz{car="car-1"} 20.0' in text
        assert 'pitlane_fleet_model_differs{car="car-1"} 1.0' in text
        assert 'pitlane_fleet_pilot_latency_ms{car="car-1",quantile="0.99"} 4.0' in text
        assert 'pitlane_fleet_refused_messages{reason="forged"} 1.0' in text
        for missing in ("/static/../web.py", "/api/cars/Car_1/history", "/nope"):
            with pytest.raises(urllib.error.HTTPError) as err:
                get(missing)
            assert err.value.code == 404
    finally:
        web.stop()


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.mark.slow
def test_browser_sees_a_car_appear_and_a_model_swap_within_5_s(fleet_broker, store):
    from selenium.webdriver.common.by import By

    ingest = Ingest(
        IngestConfig(
            fleet_broker.host, fleet_broker.passwords[p.INGEST_USER], fleet_broker.data / fb.PASSWD_NAME
        ),
        store,
    ).start()
    web = FleetWeb(WebConfig(port=0), FleetAPI(store, known=ingest.known)).start()
    car = peer(fleet_broker.port, "car-1", fleet_broker.passwords["car-1"], "car-1")
    driver = _browser()
    try:
        assert ingest.wait_connected(5) and car.connected.wait(5)
        driver.get(web.url)
        # the table is rebuilt every second: read a cell in one script call, never through a stale element
        query = 'const c = document.querySelector(`tr[data-car="car-1"] td[data-field="${arguments[0]}"]`);'
        cell = lambda field: driver.execute_script(query + "return c ? c.textContent : null;", field)  # noqa: E731
        assert wait_until(lambda: cell("last-seen") == "never", 5)  # credentials, never heard from
        sent = time.monotonic()
        car.client.publish(
            p.up_topic("car-1"), swapped("car-1", 1, A, B, differs_since=time.time()).encode(), qos=1
        )
        assert wait_until(lambda: cell("last-seen") == "now" and cell("model").startswith("aaaaaaaaaaaa"), 5)
        assert cell("desired") == "bbbbbbbbbbbb" and cell("differs") != "same"
        appeared_s = time.monotonic() - sent
        # the swap: an event at once, then the heartbeat that runs the desired model
        sent = time.monotonic()
        car.client.publish(p.up_topic("car-1"), event("car-1", 2, "model_swap", to=B).encode(), qos=1)
        car.client.publish(p.up_topic("car-1"), swapped("car-1", 3, B, B).encode(), qos=1)
        assert wait_until(lambda: cell("model").startswith("bbbbbbbbbbbb") and cell("differs") == "same", 5)
        assert cell("event").startswith("model_swap")
        swap_s = time.monotonic() - sent
        assert appeared_s < 5 and swap_s < 5
        driver.execute_script('document.querySelector(`tr[data-car="car-1"]`).click()')
        assert wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#plots .plot polyline")) >= 3, 8)
        assert driver.find_element(By.ID, "summary").text == "1/2 healthy"  # car-2 was never heard from
        severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
    finally:
        driver.quit()
        car.close()
        web.stop()
        ingest.stop()
