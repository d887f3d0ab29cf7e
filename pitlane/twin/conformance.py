"""Protocol conformance checker: does the simulator at host:port speak the DonkeyCar protocol the way
gym-donkeycar 1.3.1 (and so donkeycar's DonkeyGymEnv part) relies on?

It works against any simulator, the twin (`pitlane twin serve`) or the Unity DonkeyCar simulator, because it
is a plain TCP client written from docs/sim-protocol.md, not from the twin's code. It stays independent of
pitlane's own protocol client (`pitlane.twin.client`) on purpose: a mistake shared by the twin and that
client would otherwise pass unseen. It walks a gym-donkeycar
session (greeting, scene list, load_scene -> car_loaded, car and camera config, asynchronous telemetry,
driving, reset_car, synchronous step_mode, exit_scene) and records one CheckResult per step. It sends what
gym-donkeycar sends: JSON objects with string values and no separator, paced like its message loop, and reads
what gym-donkeycar reads: newline-terminated JSON. What the Unity sim may lack (protocol_version, step_mode)
WARNs instead of failing.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import time
from dataclasses import asdict, dataclass
from typing import NoReturn

import numpy as np

from pitlane.twin import protocol as P
from pitlane.twin.conformance_wire import ConnectionClosed, RawWire, SimulatorUnreachable  # noqa: F401 - raised by run_checks
from pitlane.twin.scenes import DEFAULT_SCENE
from pitlane.twin.world import CONTROL_HZ, CONTROL_PERIOD_S

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"

# (name, required) in the order they run; a FAIL of a required check makes the simulator non-conformant,
# optional ones only WARN
CHECKS: tuple[tuple[str, bool], ...] = (
    ("greeting", True),
    ("protocol_version", False),
    ("scene_names", True),
    ("load_scene", True),
    ("car_and_cam_config", True),
    ("telemetry_rate", True),
    ("telemetry_keys", True),
    ("extended_telemetry", True),
    ("camera_image", True),
    ("control", True),
    ("reset_car", True),
    ("step_mode", False),
    ("exit_scene", True),
    ("framing", True),
)
_REQUIRED = dict(CHECKS)

NUMBER_KEYS = (
    "steering_angle",
    "throttle",
    "speed",
    "time",
    "accel_x",
    "accel_y",
    "accel_z",
    "gyro_x",
    "gyro_y",
    "gyro_z",
    "pitch",
    "yaw",
    "roll",
)
INT_KEYS = ("activeNode", "totalNodes")
STRING_KEYS = ("hit",)
EXTENDED_KEYS = ("cte", "pos_x", "pos_y", "pos_z", "vel_x", "vel_y", "vel_z")

UNITY_RATE_HZ = CONTROL_HZ  # [Hz] the Unity sim's telemetry cap (limitFPS)
MIN_RATE_HZ = 10.0  # [Hz] below this a 20 Hz donkeycar drive loop sees repeated frames: WARN
CONFIG_SETTLE_S = 0.2  # [s] pause after configs when the sim cannot be pinged (gym-donkeycar sleeps 0.1 s)
DRIVE_THROTTLE = 0.5
DRIVE_DISTANCE_M = 0.5  # [m] drive until the car has moved this far ...
DRIVE_MAX_S = 2.0  # [s] ... or for this long
AT_REST_MPS = 0.2  # [m/s] "at rest" after reset_car
SYNC_STEPS = 5  # controls sent in synchronous mode
TIME_STEP_S = CONTROL_PERIOD_S  # [s] the step_mode time_step asked for
QUIET_S = 0.25  # [s] silence expected after the last synchronous step and after exit_scene
OPTIONAL_WAIT_S = 2.0  # [s] longest wait for an answer the Unity sim may never give


@dataclass(frozen=True)
class CheckResult:
    """One step of the session: PASS, FAIL, WARN or SKIP, and why."""

    name: str
    status: str
    reason: str
    required: bool = True
    value: float | None = None  # the measured figure where there is one (telemetry_rate [Hz], control [m/s])


class _Stop(Exception):
    """A gating check failed; the checks after it cannot run."""


def _control(steering: float, throttle: float, brake: float = 0.0) -> dict:
    return {"msg_type": "control", "steering": str(steering), "throttle": str(throttle), "brake": str(brake)}


def _what(v) -> str:
    return f"{type(v).__name__} {str(v)[:24]!r}" if isinstance(v, str) else f"{type(v).__name__} {v!r}"


def _type_problem(key: str, v) -> str | None:
    """Why `v` is not what gym-donkeycar expects under `key`, or None."""
    if key in STRING_KEYS:
        return None if isinstance(v, str) else f"{key} is {_what(v)}, expected a string"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"{key} is {_what(v)}, expected a number"
    if not math.isfinite(v):
        return f"{key} is {v!r}, expected a finite number"
    if key in INT_KEYS and v != int(v):
        return f"{key} is {v!r}, expected a whole number"
    return None


def _keys_result(name: str, frames: list[dict], keys: tuple[str, ...], why: str) -> CheckResult:
    missing: dict[str, int] = {}
    wrong: dict[str, str] = {}
    for msg in frames:
        for key in keys:
            if key not in msg:
                missing[key] = missing.get(key, 0) + 1
            elif key not in wrong and (problem := _type_problem(key, msg[key])):
                wrong[key] = problem
    if not missing and not wrong:
        return CheckResult(name, PASS, f"{len(keys)} keys with the right types in all {len(frames)} messages")
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)} (in {max(missing.values())} of {len(frames)} messages)")
    parts += wrong.values()
    return CheckResult(name, FAIL, "; ".join(parts) + why)


def _image_problem(msg: dict, w: int, h: int) -> tuple[str | None, str]:
    """(problem or None, image format) of one telemetry message's `image`, decoded as gym-donkeycar does."""
    from PIL import Image, UnidentifiedImageError

    data = msg.get("image")
    if not isinstance(data, str):
        return f"image is {_what(data)}, expected base64 text", ""
    try:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            fmt, arr = str(im.format), np.asarray(im)
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError) as e:
        return f"image does not decode as a picture ({e.__class__.__name__}: {str(e)[:60]})", ""
    if fmt not in ("JPEG", "PNG"):
        return f"image is {fmt}, expected JPEG (asked img_enc JPG) or PNG", fmt
    if arr.shape != (h, w, 3):
        got = f"{arr.shape[1]}x{arr.shape[0]}" + (f"x{arr.shape[2]}" if arr.ndim == 3 else " grayscale")
        return f"image is {got}, cam_config asked {w}x{h} RGB (shape ({h}, {w}, 3))", fmt
    return None, fmt


def _pos(msg: dict) -> tuple[float, float, float] | None:
    try:
        p = tuple(float(msg[k]) for k in ("pos_x", "pos_y", "pos_z"))
    except (KeyError, TypeError, ValueError):
        return None
    return p if all(map(math.isfinite, p)) else None  # type: ignore[return-value]


def _speed(msg: dict) -> float:
    v = msg.get("speed")
    return abs(float(v)) if isinstance(v, (int, float)) and math.isfinite(v) else 0.0


class _Session:
    """One checker run over one connection; each step adds its CheckResult."""

    def __init__(self, wire: RawWire, scene: str, timeout_s: float, img_w: int, img_h: int, window_s: float):
        self.wire, self.scene, self.timeout_s = wire, scene, timeout_s
        self.img_w, self.img_h, self.window_s = img_w, img_h, window_s
        self.results: list[CheckResult] = []
        self.current = CHECKS[0][0]
        self.has_version = False  # the sim answers get_protocol_version: a round trip then syncs with it
        self.frames: list[dict] = []  # asynchronous telemetry of the rate window
        self.start_pos: tuple[float, float, float] | None = None
        self.moved_m: float | None = None

    def add(self, status: str, reason: str, value: float | None = None) -> CheckResult:
        result = CheckResult(self.current, status, reason, _REQUIRED[self.current], value)
        self.results.append(result)
        return result

    def fail_and_stop(self, reason: str) -> NoReturn:
        self.add(FAIL, reason)
        raise _Stop(self.current)

    def run(self) -> None:
        for step in (
            self.greeting,
            self.protocol_version,
            self.scene_names,
            self.load_scene,
            self.car_and_cam_config,
            self.telemetry_rate,
            self.control,
            self.reset_car,
            self.step_mode,
            self.exit_scene,
        ):
            self.current = step.__name__
            step()

    def sync(self) -> bool:
        """Wait until the sim has handled all sent so far: a protocol_version round trip where the sim has
        one, else a pause. False when the round trip got no answer."""
        if not self.has_version:
            self.wire.telemetry(CONFIG_SETTLE_S)
            return True
        self.wire.send({"msg_type": "get_protocol_version"})
        return self.wire.wait_for("protocol_version", timeout_s=self.timeout_s) is not None

    # ---- the menu ----------------------------------------------------------------------------------
    def greeting(self) -> None:
        t0 = time.monotonic()
        got = self.wire.wait_for("scene_selection_ready", timeout_s=self.timeout_s)
        if got is None:
            self.add(
                FAIL,
                f"no scene_selection_ready within {self.timeout_s:g} s of connecting "
                f"(gym-donkeycar asks for the scene list only after it){self.wire.hint()}",
            )
        else:
            self.add(PASS, f"scene_selection_ready {got[0] - t0:.2f} s after connecting")

    def protocol_version(self) -> None:
        self.wire.send({"msg_type": "get_protocol_version"})
        wait = min(self.timeout_s, OPTIONAL_WAIT_S)
        got = self.wire.wait_for("protocol_version", timeout_s=wait)
        if got is None:
            self.add(
                WARN,
                f"no protocol_version answer within {wait:g} s (older Unity builds lack it; "
                "gym-donkeycar never asks)",
            )
            return
        self.has_version = True
        version = got[1].get("version")
        if version is None:
            self.add(WARN, "protocol_version without a version key")
        else:
            self.add(PASS, f"version {version!r}")

    def scene_names(self) -> None:
        self.wire.send({"msg_type": "get_scene_names"})
        got = self.wire.wait_for("scene_names", timeout_s=self.timeout_s)
        if got is None:
            self.fail_and_stop(
                f"no scene_names within {self.timeout_s:g} s of get_scene_names{self.wire.hint()}"
            )
        names = got[1].get("scene_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            self.fail_and_stop(f"scene_names is {_what(names)}, expected a list of names")
        if self.scene not in names:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            self.fail_and_stop(
                f"{self.scene!r} is not among the {len(names)} scenes [{shown}] "
                "(gym-donkeycar raises ValueError)"
            )
        self.add(PASS, f"{len(names)} scenes, {self.scene!r} among them")

    def load_scene(self) -> None:
        t0 = time.monotonic()
        self.wire.send({"msg_type": "load_scene", "scene_name": self.scene})
        got = self.wire.wait_for("car_loaded", timeout_s=self.timeout_s)
        if got is None:
            self.fail_and_stop(
                f"no car_loaded within {self.timeout_s:g} s of load_scene (gym-donkeycar "
                f"waits for it before it configures or drives){self.wire.hint()}"
            )
        self.add(PASS, f"car_loaded {got[0] - t0:.2f} s after load_scene {self.scene!r}")

    # ---- the car -----------------------------------------------------------------------------------
    def car_and_cam_config(self) -> None:
        """What gym-donkeycar's on_car_loaded does: hand brake, car_config, cam_config (0 = default)."""
        self.wire.send(_control(0, 0, 1.0))
        self.wire.send(
            {
                "msg_type": "car_config",
                "body_style": "donkey",
                "body_r": "255",
                "body_g": "72",
                "body_b": "0",
                "car_name": "pitlane-check",
                "font_size": "100",
            }
        )
        cam = {
            "fov": 0,
            "fish_eye_x": 0.0,
            "fish_eye_y": 0.0,
            "img_w": self.img_w,
            "img_h": self.img_h,
            "img_d": 0,
            "img_enc": "JPG",
            "offset_x": 0.0,
            "offset_y": 0.0,
            "offset_z": 0.0,
            "rot_x": 0.0,
            "rot_y": 0.0,
            "rot_z": 0.0,
        }
        self.wire.send({"msg_type": "cam_config", **{k: str(v) for k, v in cam.items()}})
        if not self.sync():
            self.fail_and_stop(
                f"after car_config and cam_config the simulator stopped answering "
                f"get_protocol_version (waited {self.timeout_s:g} s){self.wire.hint()}"
            )
        self.add(
            PASS,
            f"car_config and cam_config ({self.img_w}x{self.img_h} JPG) sent; the simulator "
            + ("still answers" if self.has_version else "kept the connection open"),
        )

    def telemetry_rate(self) -> None:
        """Rate, keys, extended keys and camera image of the asynchronous stream."""
        first = self.wire.wait_for("telemetry", timeout_s=self.timeout_s)
        if first is None:
            self.fail_and_stop(
                f"no telemetry within {self.timeout_s:g} s after car_loaded and the configs "
                f"(the Unity sim streams from car_loaded on){self.wire.hint()}"
            )
        frames = [first] + self.wire.telemetry(self.window_s)
        self.frames = [m for _, m in frames]
        n, span = len(frames), frames[-1][0] - frames[0][0]
        if n < 3 or span <= 0:
            self.add(
                FAIL,
                f"only {n} telemetry message(s) in {self.window_s:g} s (the Unity sim sends "
                f"{UNITY_RATE_HZ:g} Hz)",
            )
        else:
            hz = (n - 1) / span
            text = f"{hz:.1f} Hz ({n} messages in {span:.2f} s; the Unity sim sends {UNITY_RATE_HZ:g} Hz)"
            if hz >= MIN_RATE_HZ:
                self.add(PASS, text, hz)
            else:
                self.add(WARN, text + "; a 20 Hz donkeycar loop would see repeated frames", hz)
        why = " (gym-donkeycar's reward and episode end use cte; pos_* and vel_* fill its info)"
        for name, result in (
            (
                "telemetry_keys",
                _keys_result("telemetry_keys", self.frames, NUMBER_KEYS + INT_KEYS + STRING_KEYS, ""),
            ),
            ("extended_telemetry", _keys_result("extended_telemetry", self.frames, EXTENDED_KEYS, why)),
        ):
            self.current = name
            self.add(result.status, result.reason)
        self.current = "camera_image"
        formats = set()
        for i, msg in enumerate(self.frames):
            problem, fmt = _image_problem(msg, self.img_w, self.img_h)
            if problem:
                self.add(FAIL, f"message {i + 1} of {n}: {problem}")
                return
            formats.add(fmt)
        self.add(
            PASS, f"all {n} frames decode as {'/'.join(sorted(formats))} to ({self.img_h}, {self.img_w}, 3)"
        )

    def control(self) -> None:
        self.start_pos = _pos(self.frames[-1])
        t0 = time.monotonic()
        deadline, next_send = t0 + DRIVE_MAX_S, t0
        top, moved, has_pos = 0.0, 0.0, self.start_pos is not None
        try:
            while (now := time.monotonic()) < deadline:
                if now >= next_send:
                    self.wire.send(_control(0, DRIVE_THROTTLE))
                    next_send = now + CONTROL_PERIOD_S
                got = self.wire.next(min(deadline, next_send))
                if got is None or got[1]["msg_type"] != "telemetry":
                    continue
                top = max(top, _speed(got[1]))
                pos = _pos(got[1])
                if has_pos and pos is not None:
                    moved = max(moved, math.dist(pos, self.start_pos))  # type: ignore[arg-type]
                if moved >= DRIVE_DISTANCE_M or (not has_pos and top > 0.1 and now - t0 > 0.5):
                    break
        finally:
            self.wire.send(_control(0, 0, 1.0))
        dt = time.monotonic() - t0
        self.moved_m = moved if has_pos else None
        where = f", moved {moved:.2f} m" if has_pos else " (no pos_* to see it move)"
        if top > 0.01 and (not has_pos or moved > 0.01):
            self.add(PASS, f"throttle {DRIVE_THROTTLE} for {dt:.2f} s: top speed {top:.2f} m/s{where}", top)
        else:
            self.add(
                FAIL,
                f"after {dt:.1f} s of throttle {DRIVE_THROTTLE} the top speed is {top:.2f} m/s{where}",
                top,
            )

    def reset_car(self) -> None:
        if self.moved_m is not None and self.moved_m < 0.05:
            self.add(SKIP, "the car did not move, so a reset cannot be seen")
            return
        t0 = time.monotonic()
        self.wire.send({"msg_type": "reset_car"})
        deadline, last = t0 + self.timeout_s, None
        tolerance = max(0.1, 0.3 * (self.moved_m or 0.0))  # [m] from the start position
        while (got := self.wire.next(deadline)) is not None:
            if got[1]["msg_type"] != "telemetry":
                continue
            last = got[1]
            pos = _pos(last)
            d = math.dist(pos, self.start_pos) if pos and self.start_pos else None
            if _speed(last) < AT_REST_MPS and (self.moved_m is None or (d is not None and d <= tolerance)):
                where = f"within {d:.2f} m of the start" if d is not None else "(no pos_* to check where)"
                self.add(PASS, f"at rest {where} {got[0] - t0:.2f} s after reset_car")
                return
        if last is None:
            self.add(FAIL, f"no telemetry within {self.timeout_s:g} s after reset_car{self.wire.hint()}")
            return
        pos = _pos(last)
        far = f"{math.dist(pos, self.start_pos):.2f} m" if pos and self.start_pos else "? m"
        self.add(
            FAIL,
            f"{self.timeout_s:g} s after reset_car the car is {far} from its start (it had moved "
            f"{self.moved_m or 0:.2f} m) at {_speed(last):.2f} m/s",
        )

    def step_mode(self) -> None:
        """Synchronous mode: exactly one telemetry per control, time advancing by time_step."""
        self.wire.send({"msg_type": "step_mode", "step_mode": "synchronous", "time_step": str(TIME_STEP_S)})
        try:
            if not self.sync():
                self.add(WARN, f"no protocol_version answer within {self.timeout_s:g} s after step_mode")
                return
            answers = []
            wait = min(self.timeout_s, OPTIONAL_WAIT_S)
            for k in range(SYNC_STEPS):
                self.wire.send(_control(0, 0.3))
                got = self.wire.wait_for("telemetry", timeout_s=wait)
                if got is None:
                    self.add(
                        WARN,
                        f"no telemetry answered control {k + 1} of {SYNC_STEPS} within {wait:g} s "
                        "in synchronous mode",
                    )
                    return
                answers.append(got[1])
            extra = self.wire.telemetry(QUIET_S)
            if extra:
                self.add(
                    WARN,
                    f"telemetry kept streaming after step_mode synchronous ({len(extra)} unasked "
                    f"messages in {QUIET_S:g} s without a control): synchronous mode unsupported",
                )
                return
            times = [m.get("time") for m in answers]
            if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times):
                self.add(WARN, f"{SYNC_STEPS} controls -> {SYNC_STEPS} telemetry, but time is not a number")
                return
            steps = np.diff(np.asarray(times, dtype=float))
            text = (
                f"{SYNC_STEPS} controls -> {SYNC_STEPS} telemetry, none unasked; time advanced "
                f"{steps.mean():.3f} s per step (time_step {TIME_STEP_S:g})"
            )
            ok = np.all(np.abs(steps - TIME_STEP_S) <= 0.25 * TIME_STEP_S)
            self.add(PASS if ok else WARN, text if ok else text + f", steps {np.round(steps, 3).tolist()}")
        finally:
            self.wire.send(
                {"msg_type": "step_mode", "step_mode": "asynchronous", "time_step": str(TIME_STEP_S)}
            )

    def exit_scene(self) -> None:
        t0 = time.monotonic()
        self.wire.send({"msg_type": "exit_scene"})
        got = self.wire.wait_for("scene_selection_ready", timeout_s=self.timeout_s)
        if got is not None:
            late = self.wire.telemetry(QUIET_S)
            if len(late) > 1:
                self.add(FAIL, f"scene_selection_ready came, but {len(late)} telemetry messages followed it")
            else:
                self.add(
                    PASS, f"back in the menu: scene_selection_ready {got[0] - t0:.2f} s after exit_scene"
                )
            return
        hint = self.wire.hint()
        self.wire.send({"msg_type": "get_scene_names"})
        if self.wire.wait_for("scene_names", timeout_s=min(self.timeout_s, OPTIONAL_WAIT_S)) is not None:
            self.add(
                WARN,
                f"no scene_selection_ready within {self.timeout_s:g} s of exit_scene, but the "
                f"menu answers get_scene_names{hint}",
            )
        else:
            self.add(FAIL, f"no scene_selection_ready within {self.timeout_s:g} s of exit_scene{hint}")

    def finish(self, stopped_by: str | None) -> list[CheckResult]:
        """Add the framing verdict and a SKIP for every check that did not run."""
        self.current = "framing"
        w = self.wire
        if w.bad:
            self.add(
                FAIL,
                f"{len(w.bad)} of {w.received} messages unusable (gym-donkeycar drops them); "
                f"first: {w.bad[0][:160]}",
            )
        else:
            self.add(PASS, f"{w.received} messages, each one JSON object with a msg_type and a newline")
        done = {r.name for r in self.results}
        why = f"not run: {stopped_by} failed" if stopped_by else "not run"
        skipped = [CheckResult(n, SKIP, why, req) for n, req in CHECKS if n not in done]
        order = {n: i for i, (n, _) in enumerate(CHECKS)}
        return sorted(self.results + skipped, key=lambda r: order[r.name])


def run_checks(
    host: str = "127.0.0.1",
    port: int = P.DEFAULT_PORT,
    scene: str = DEFAULT_SCENE,
    timeout: float = 10.0,
    *,
    img_w: int = 160,
    img_h: int = 120,
    window_s: float = 1.0,
) -> list[CheckResult]:
    """Walk a gym-donkeycar session against the simulator at host:port and judge each step.

    `timeout` [s] bounds each wait for an answer; `window_s` [s] is how long the telemetry rate is measured.
    Raises SimulatorUnreachable (a UserError) when nothing accepts the connection.
    """
    wire = RawWire(host, int(port), timeout)
    session = _Session(wire, scene, float(timeout), int(img_w), int(img_h), float(window_s))
    stopped_by = None
    try:
        session.run()
    except _Stop as e:
        stopped_by = str(e)
    except ConnectionClosed as e:
        stopped_by = session.current
        if session.current not in {r.name for r in session.results}:
            session.add(FAIL, f"{e} during this step")
    finally:
        wire.sock.close()
    return session.finish(stopped_by)


def conformant(results: list[CheckResult]) -> bool:
    """True when no check failed (optional checks never fail, they WARN)."""
    return not any(r.status == FAIL for r in results)


def format_table(results: list[CheckResult], host: str, port: int, scene: str) -> str:
    width = max(len(r.name) for r in results) + 2
    lines = [
        f"DonkeyCar protocol conformance of {host}:{port} (scene {scene})",
        "",
        f"{'check':<{width}}{'result':<8}reason",
        f"{'-' * (width - 2):<{width}}{'------':<8}------",
    ]
    for r in results:
        lines.append(f"{r.name:<{width}}{r.status:<8}{r.reason}" + ("" if r.required else " [optional]"))
    counts = {s: sum(r.status == s for r in results) for s in (PASS, WARN, FAIL, SKIP)}
    verdict = "conformant" if conformant(results) else "NOT conformant"
    lines += [
        "",
        f"{counts[PASS]} passed, {counts[WARN]} warned, {counts[FAIL]} failed, "
        f"{counts[SKIP]} skipped: {verdict}",
    ]
    return "\n".join(lines)


def results_json(results: list[CheckResult], host: str, port: int, scene: str) -> dict:
    return {
        "host": host,
        "port": int(port),
        "scene": scene,
        "conformant": conformant(results),
        "checks": [asdict(r) for r in results],
    }
