"""The fleet part: the car tells the NUC how it is (heartbeats) and what happened (events).

A threaded donkeycar part. In the vehicle loop, `run_threaded` only notes a few values (a clock reading, the
mode, the pilot's last latency, the CTE, the model/* memory keys) and hands every n-th camera frame to the
drift monitor by reference: a few microseconds, so the 20 Hz loop never waits for it
(bench/bench_fleet_part.py measures it). Its own thread (`update`) does the rest: it measures the sampled
frames (drift), turns a watchdog stop, a model swap, a rollback or a refused model into an event record at
once, and writes a heartbeat into the spool every `heartbeat_s`. The sender (its own thread too) takes
them home; the uploader (another thread) brings finished tubs home as data bundles.

`add_fleet(V, cfg, ...)` builds all of it from the FLEET_* settings and adds the part to the vehicle; the
car app calls it once, after the TubWriter (so at car stop the tub is closed before the part's shutdown
uploads it and sends what is spooled, within FLEET_STOP_BUDGET_S).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pitlane import __version__
from pitlane.fleet import protocol
from pitlane.fleet.drift import Baseline, DriftMonitor
from pitlane.fleet.sender import Sender, SenderParams
from pitlane.fleet.spool import Spool, SpoolFull

logger = logging.getLogger(__name__)

MODEL_KEYS = ("model/digest", "model/serial", "model/state", "model/error")  # the model manager's outputs
ROLLED_BACK, REFUSED = "rolled back", "refused"  # the model manager's states that are events
WATCH_S = 0.1  # [s] how often the part's thread looks for events


@dataclass(frozen=True)
class FleetParams:
    """The FLEET_* settings (pitlane/car/default_car/config.py documents each)."""

    car: str
    broker: str  # "host:port" of Mosquitto
    state_dir: Path  # spool and upload state
    password: str | None = None
    gateway: str | None = None  # "host:port" (or http(s)://host:port) of the registry front; None: no upload
    profile: str = "twin"
    heartbeat_s: float = 1.0  # [s]
    spool_max_mb: float = 256.0  # [MB]
    upload: bool = True
    delete_uploaded: bool = False
    drift: bool = True
    drift_every: int = 5  # frames between two statistics samples
    image: str | None = None  # the car image the deployment runs (a digest reference), for the heartbeat
    stop_budget_s: float = 10.0  # [s] at car stop: upload the finished tub and send what is spooled
    data_path: str | None = None  # where the car records tubs (DATA_PATH)

    @classmethod
    def from_config(cls, cfg) -> FleetParams:
        return cls(
            car=protocol.check_car_name(cfg.FLEET_CAR_NAME),
            broker=cfg.FLEET_BROKER,
            state_dir=Path(os.path.expanduser(cfg.FLEET_STATE_DIR)),
            password=cfg.FLEET_PASSWORD,
            gateway=cfg.FLEET_GATEWAY,
            profile=cfg.PITLANE_PROFILE,
            heartbeat_s=float(cfg.FLEET_HEARTBEAT_S),
            spool_max_mb=float(cfg.FLEET_SPOOL_MAX_MB),
            upload=bool(cfg.FLEET_UPLOAD),
            delete_uploaded=bool(cfg.FLEET_DELETE_UPLOADED),
            drift=bool(cfg.FLEET_DRIFT),
            drift_every=int(cfg.FLEET_DRIFT_EVERY),
            image=getattr(cfg, "FLEET_IMAGE", None),
            stop_budget_s=float(getattr(cfg, "FLEET_STOP_BUDGET_S", 10.0)),
            data_path=cfg.DATA_PATH,
        )


def _digest_of(reference: str | None) -> str | None:
    if not reference or "@" not in reference:
        return None
    return reference.rsplit("@", 1)[1]


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


class FleetPart:
    """Heartbeats and events into the spool. Inputs: INPUTS; no outputs."""

    INPUTS = ["cam/image_array", "user/mode", "pos/cte", *MODEL_KEYS]

    def __init__(
        self,
        params: FleetParams,
        spool: Spool,
        sender: Sender | None = None,
        *,
        uploader: Any = None,
        pilot: Any = None,
        twin: Any = None,
        manager: Any = None,
        watchdog: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.params = params
        self.spool, self.sender, self.uploader = spool, sender, uploader
        self.pilot, self.twin, self.manager, self.watchdog = pilot, twin, manager, watchdog
        self.clock = clock
        self.drift = DriftMonitor(every=params.drift_every) if params.drift else None
        self.on = True
        # written by the loop (run_threaded), read by the part's thread
        self._periods: list[float] = []  # [s] loop periods since the thread last took them
        self._latencies: list[float] = []  # [s] pilot inference times since then
        self._ctes: list[float] = []  # [m] |CTE| since the last heartbeat
        self._last_loop: float | None = None
        self._loop_seen = False
        self.mode: str | None = None
        self.model: tuple[Any, ...] = (None, None, None, None)
        # the part's thread
        self._latency_window: deque[float] = deque(maxlen=400)
        self._loop_window: deque[float] = deque(maxlen=100)
        self._stops: dict[str, int] = {}
        self._seen_stops = 0
        self._running: str | None = None  # model digest last reported
        self._state: str | None = None
        self._differs_since: float | None = None
        self._next_beat = 0.0
        self._started = False
        self._wake = threading.Event()
        self.heartbeats = 0
        self.events = 0

    # --- the vehicle loop -------------------------------------------------------------------------------
    def run_threaded(self, image=None, mode=None, cte=None, *model) -> None:
        now = time.perf_counter()
        if self._last_loop is not None:
            self._periods.append(now - self._last_loop)
        self._last_loop = now
        self.mode = mode
        if mode not in (None, "user"):
            latency = getattr(self.pilot, "latency_s", None)
            if latency is not None:
                self._latencies.append(latency)
        if cte is not None:
            self._ctes.append(cte)
        if model:
            self.model = model
            self._loop_seen = True
        if self.drift is not None:
            self.drift.offer(image)

    def run(self, *args) -> None:
        """Not threaded (tests, a single-threaded loop): note the values, then do the thread's work."""
        self.run_threaded(*args)
        self.tick()

    # --- the part's thread ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.sender is not None:
            self.sender.start()
        if self.uploader is not None:
            self.uploader.start()

    def update(self) -> None:
        self.start()
        while self.on:
            try:
                self.tick()
            except Exception:  # the part must outlive any surprise; the car keeps driving
                logger.exception("fleet part: unexpected failure")
            self._wake.wait(WATCH_S)

    def tick(self) -> None:
        """Measure a sampled frame, spool new events, and a heartbeat when one is due."""
        if self.drift is not None:
            self.drift.update()
        self._watch_model()
        self._watch_watchdog()
        now = self.clock()
        if now >= self._next_beat:
            self._next_beat = now + self.params.heartbeat_s
            self._append(protocol.HEARTBEAT, self.heartbeat_body())
            self.heartbeats += 1

    def _append(self, kind: str, body: dict[str, Any]) -> None:
        try:
            self.spool.append(kind, body, t=self.clock())
        except SpoolFull:
            return  # logged by the spool; events and tubs still go in
        except protocol.ProtocolError as exc:
            logger.error("fleet part: a %s record was refused: %s", kind, exc)
            return
        if self.sender is not None:
            self.sender.poke()

    def event(self, kind: str, detail: dict[str, Any]) -> None:
        """Spool an event at once (the fleet page shows it within seconds)."""
        self._append(protocol.EVENT, {"type": kind, "detail": detail})
        self.events += 1

    def _running_model(self) -> tuple[str | None, int | None, str]:
        digest, serial, state = self.model[:3]
        if self.manager is None:
            inner = getattr(self.pilot, "pilot", self.pilot)
            digest = getattr(inner, "digest", None)
            return (digest if isinstance(digest, str) else None), None, ("running" if self.pilot else "none")
        return (digest or None), (serial or None), (state or "none")

    def _watch_model(self) -> None:
        if self.manager is not None and not self._loop_seen:
            return  # the model/* keys come with the first loop; before it nothing is known
        digest, serial, state = self._running_model()
        error = self.model[3] or ""
        if digest != self._running:
            if self._running is not None or self._state is not None:  # not the first value the car reports
                if state == ROLLED_BACK:
                    self.event("rollback", {"from": self._running, "to": digest, "error": error})
                else:
                    self.event("model_swap", {"from": self._running, "to": digest, "serial": serial})
            self._running = digest
            if self.drift is not None:
                config = getattr(getattr(self.manager, "current", None), "config", None)
                self.drift.set_baseline(Baseline.from_bundle_config(config))
            if self.uploader is not None:
                self.uploader.note_model(digest)
        if state != self._state:
            if state == REFUSED:
                self.event("refused", {"error": error, "desired": getattr(self.manager, "desired", None)})
            self._state = state
        desired = _digest_of(getattr(self.manager, "desired", None))
        if desired is None or desired == digest:
            self._differs_since = None
        elif self._differs_since is None:
            self._differs_since = self.clock()

    def _watch_watchdog(self) -> None:
        events = getattr(self.watchdog, "events", None) or []
        for stop in events[self._seen_stops :]:
            self._stops[stop.reason] = self._stops.get(stop.reason, 0) + 1
            self.event("watchdog_stop", {"reason": stop.reason, "detail": str(stop.detail)})
        self._seen_stops = len(events)

    def heartbeat_body(self) -> dict[str, Any]:
        periods, self._periods = self._periods, []
        latencies, self._latencies = self._latencies, []
        ctes, self._ctes = self._ctes, []
        self._loop_window.extend(periods[-100:])
        self._latency_window.extend(latencies)
        digest, serial, state = self._running_model()
        loop_hz = None
        if periods:
            loop_hz = round(len(periods) / sum(periods), 2) if sum(periods) > 0 else None
        pilot_ms: dict[str, float | None] = {"p50": None, "p99": None}
        if self._latency_window:
            p50, p99 = np.percentile(np.fromiter(self._latency_window, float), [50, 99]) * 1000.0
            pilot_ms = {"p50": round(float(p50), 2), "p99": round(float(p99), 2)}
        twin = None
        if self.params.profile == "twin":
            abs_cte = [abs(c) for c in ctes if _finite(c) is not None]
            twin = {
                "laps": getattr(self.twin, "laps_completed", None),
                "cte_mean": round(sum(abs_cte) / len(abs_cte), 4) if abs_cte else None,
                "cte_max": round(max(abs_cte), 4) if abs_cte else None,
            }
        tubs, tub_records = self.uploader.backlog() if self.uploader is not None else (0, 0)
        return protocol.heartbeat_body(
            self.params.car,
            profile=self.params.profile if self.params.profile in protocol.PROFILES else None,
            image=self.params.image,
            pitlane_version=__version__,
            model={
                "running": {"digest": digest, "serial": serial, "state": state},
                "desired": getattr(self.manager, "desired", None),
                # the model manager's own measure when it keeps one (its MODEL_STALE_S judges by it)
                "differs_since": getattr(self.manager, "differs_since", self._differs_since),
            },
            loop_hz=loop_hz,
            pilot_ms=pilot_ms,
            watchdog_stops=dict(self._stops),
            twin=twin,
            disk_free_mb=self._disk_free_mb(),
            backlog={"records": self.spool.count(), "tubs": tubs, "tub_records": tub_records},
            drift=self.drift.report() if self.drift is not None else None,
            mode=self.mode if isinstance(self.mode, str) else None,
        )

    def _disk_free_mb(self) -> float | None:
        try:
            return round(shutil.disk_usage(self.params.data_path or self.params.state_dir).free / 2**20, 1)
        except OSError:
            return None

    # --- stop ---------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """A last heartbeat; then, within stop_budget_s, upload the tub just closed and send the spool."""
        self.on = False
        self._wake.set()
        deadline = time.monotonic() + self.params.stop_budget_s
        try:
            self.tick()
            self._next_beat = 0.0
            self.tick()
        except Exception:
            logger.exception("fleet part: the last heartbeat failed")
        if self.uploader is not None:
            self.uploader.stop(budget_s=max(0.0, deadline - time.monotonic()))
        if self.sender is not None:
            while self.spool.count() and time.monotonic() < deadline and self.sender.stats.connected:
                time.sleep(0.05)
            left = self.spool.count()
            if left:
                logger.info(
                    "fleet part: %d record(s) stay spooled; they go home when the car next runs", left
                )
            self.sender.stop()
        self.spool.close()


def add_fleet(
    V, cfg, *, tub_path=None, pilot=None, twin=None, manager=None, watchdog=None
) -> FleetPart | None:
    """Add the fleet part (and start nothing yet: the vehicle starts its thread) when FLEET_BROKER is set."""
    if not getattr(cfg, "FLEET_BROKER", None):
        return None
    from pitlane.fleet.uploader import Uploader  # lazily: requests and tar only where tubs go home

    params = FleetParams.from_config(cfg)
    spool = Spool(
        params.state_dir / "spool.db",
        params.car,
        max_bytes=int(params.spool_max_mb * 2**20),
    )
    sender = Sender(spool, SenderParams.from_broker(params.broker, password=params.password))
    uploader = None
    if params.upload and params.gateway:
        uploader = Uploader.from_params(params, spool, current_tub=tub_path, poke=sender.poke)
    part = FleetPart(
        params, spool, sender, uploader=uploader, pilot=pilot, twin=twin, manager=manager, watchdog=watchdog
    )
    V.add(part, inputs=FleetPart.INPUTS, threaded=True)
    logger.info(
        "fleet: car %s reports to %s%s",
        params.car,
        params.broker,
        f"; finished tubs go to {params.gateway}" if uploader is not None else "",
    )
    return part
