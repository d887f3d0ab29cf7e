"""The DonkeyCar simulator protocol as pure functions: frame the byte stream, read client messages, build answers.

No sockets here (the server and client in this package wrap these). What the Unity simulator and
gym-donkeycar 1.3.1 do decides every detail (docs/sim-protocol.md):

* Inbound framing: the simulator ends its own messages with ``\\n``, but clients need not: gym-donkeycar sends
  ``json.dumps(msg)`` back to back without a separator. `MessageSplitter` therefore cuts objects by brace
  depth (aware of strings), and uses newlines only to drop a truncated message.
* Client values are usually strings (``"steering": "0.25"``); numbers and comma decimals (``"0,25"``) work too.
* Outbound: one JSON object per line, numbers as JSON numbers. We keep json's default ``": "`` separator:
  gym-donkeycar rewrites ``"key":1,5`` (no space) as a comma decimal, which compact JSON could trigger.

Coordinates: the twin's ground plane (x east, y north, yaw CCW from +x) maps to Unity's left-handed y-up frame
as pos_x = x, pos_z = y, pos_y = 0; Unity's yaw [deg] turns clockwise from +z, so yaw_unity = 90 - yaw_deg.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass

import numpy as np

from pitlane.twin.vehicle import Control

PROTOCOL_VERSION = "2"
DEFAULT_PORT = 9091  # the simulator's TCP port, as the Unity DonkeyCar simulator listens (one home)
MAX_MESSAGE_BYTES = 1 << 20  # [bytes] larger inbound messages are discarded
IMAGE_ENCODINGS = ("JPG", "PNG", "TGA")
JPEG_QUALITY = 75  # Unity's Texture2D.EncodeToJPG default, so frames carry the same artefacts


class ProtocolError(ValueError):
    """One inbound message that cannot be used; the text says what was wrong."""


# ----------------------------------------------------------------------------------------------- framing

_SCAN_OBJECT = re.compile(rb'[{}"\n]')
_SCAN_STRING = re.compile(rb'["\\\n]')
_SPACE = re.compile(rb"[ \t\r\n]*")
_COMMA_DECIMAL = re.compile(rb'("[A-Za-z_][A-Za-z0-9_]*"\s*:\s*)(-?\d+),(\d+)(?=\s*[,}])')
# Where a client message begins: every client (gym-donkeycar, donkeycar, the Unity sim, pitlane) writes
# msg_type first. These bytes cannot occur inside a JSON string (its quotes would be escaped) and client
# messages are flat, so inside an unfinished object they mean: that object was cut short, a new one starts.
_MESSAGE_START = re.compile(rb'\{[ \t\r\n]{0,8}"msg_type"[ \t\r\n]{0,8}:')
_OVERLAP = 32  # [bytes] > the longest _MESSAGE_START match: a start split across two chunks is still found
# after an oversized message: the next message start, or a line that starts an object
_HUNT = re.compile(rb'\{[ \t\r\n]{0,8}"msg_type"[ \t\r\n]{0,8}:|\n[ \t\r]*\{')


class MessageSplitter:
    """Cuts an inbound byte stream into JSON objects; never raises.

    `feed` returns, in order, a dict for each good message and a ProtocolError for each bad one (malformed
    JSON, non-object, stray bytes, an object over `max_bytes`, a message cut short). A message cut short
    costs only itself: the start of a new message (``{"msg_type":``), or a newline inside it followed by a
    new object, ends the broken fragment, so every later complete message is read (brake commands included),
    however the bytes were split into chunks.
    """

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES):
        self.max_bytes = max_bytes
        self._buf = bytearray()  # bytes not yet consumed
        self._pos = 0  # how far into _buf the state below has read
        self._start = 0  # where the current object (depth > 0) begins in _buf
        self._searched = 0  # _buf[start + 1 : searched] holds no _MESSAGE_START
        self._depth = 0
        self._in_string = False
        self._escape = False  # the previous byte was a backslash inside a string
        self._after_newline = False  # a newline was seen inside the current object
        self._skipping = False  # discarding an oversized object until the next message start

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished message held back (reported when a client vanishes mid-message)."""
        return len(self._buf) - self._start if self._depth and not self._skipping else 0

    def feed(self, data: bytes) -> list[dict | ProtocolError]:
        out: list[dict | ProtocolError] = []
        if (
            not self._buf
            and not self._depth
            and not self._skipping
            and len(data) <= self.max_bytes
            and data[:1] == b"{"
            and data.rstrip()[-1:] == b"}"
            and data.count(b"{") == 1  # one flat object: read alike however it was split
        ):
            try:  # fast path: one whole message in one chunk (the usual case)
                msg = json.loads(data)
            except (ValueError, RecursionError):
                pass
            else:
                out.append(_checked(msg, data))
                return out
        self._buf += data
        self._scan(out)
        self._compact()
        return out

    def _open(self, at: int) -> None:
        """A new object begins at _buf[at] (a '{')."""
        self._depth, self._start, self._pos, self._searched = 1, at, at + 1, at + 1
        self._in_string = self._escape = self._after_newline = False

    def _close(self, at: int) -> None:
        """The current object ended (or broke off) before _buf[at]; read on at depth 0."""
        self._depth, self._pos = 0, at
        self._in_string = self._escape = self._after_newline = False

    def _compact(self) -> None:
        if self._skipping:
            cut = max(0, len(self._buf) - _OVERLAP)
        elif self._depth:
            if len(self._buf) - self._start > self.max_bytes:
                self._depth, self._skipping = 0, True
                cut = max(0, len(self._buf) - _OVERLAP)
            else:
                cut = self._start
        else:
            cut = self._pos
        del self._buf[:cut]
        self._pos, self._start = max(0, self._pos - cut), max(0, self._start - cut)
        self._searched = max(0, self._searched - cut)
        if self._skipping:
            self._pos = 0

    def _scan(self, out: list) -> None:
        buf = self._buf
        while True:
            if self._skipping:
                m = _HUNT.search(buf, self._pos)
                if m is None:
                    return
                self._skipping = False
                self._close(buf.index(b"{", m.start(), m.end()))
            if self._depth == 0:
                i = buf.find(b"{", self._pos)
                stray = bytes(buf[self._pos : len(buf) if i < 0 else i]).strip()
                if stray:
                    out.append(
                        ProtocolError(f"{len(stray)} bytes outside any JSON object ignored: {stray[:40]!r}")
                    )
                if i < 0:
                    self._pos = len(buf)
                    return
                self._open(i)
            # a message start inside this object: it was cut short (unless it ends before that start)
            m = _MESSAGE_START.search(buf, self._searched)
            limit = len(buf) if m is None else m.start()
            self._searched = max(self._start + 1, len(buf) - _OVERLAP) if m is None else limit
            if self._advance(limit, out):
                continue
            if m is None:
                if len(buf) - self._start > self.max_bytes:
                    out.append(ProtocolError(f"message longer than {self.max_bytes} bytes; discarded"))
                return
            out.append(ProtocolError("message cut short (a new message began before it ended); discarded"))
            self._open(limit)

    def _advance(self, limit: int, out: list) -> bool:  # noqa: C901 - one state machine reads best in one place
        """Run the brace/string state over _buf[_pos:limit]; True when the object ended there (emitted) or
        broke off (reported), with _pos after it at depth 0."""
        buf, pos = self._buf, self._pos
        while pos < limit:
            if self._escape:
                self._escape, pos = False, pos + 1
                continue
            if self._in_string:
                m = _SCAN_STRING.search(buf, pos, limit)
                if m is None:
                    pos = limit
                    break
                i, c = m.start(), buf[m.start()]
                if c == 0x5C:  # backslash
                    self._escape, pos = True, i + 1
                elif c == 0x22:  # quote
                    self._in_string, pos = False, i + 1
                else:  # a raw newline cannot be inside a JSON string: the message was cut short
                    out.append(ProtocolError("message cut short by a newline inside a string; discarded"))
                    self._close(i + 1)
                    return True
                continue
            if self._after_newline:
                j = _SPACE.match(buf, pos, limit).end()  # type: ignore[union-attr]  # "*" always matches
                if j == limit:
                    pos = limit
                    break
                self._after_newline = False
                if buf[j] == 0x7B:  # a line starting with '{': the previous message never ended
                    out.append(
                        ProtocolError("message cut short (a new message began on the next line); discarded")
                    )
                    self._close(j)
                    return True
                pos = j
                continue
            m = _SCAN_OBJECT.search(buf, pos, limit)
            if m is None:
                pos = limit
                break
            i, c = m.start(), buf[m.start()]
            pos = i + 1
            if c == 0x22:
                self._in_string = True
            elif c == 0x0A:
                self._after_newline = True
            elif c == 0x7B:
                self._depth += 1
            else:  # '}'
                self._depth -= 1
                if self._depth == 0:
                    out.append(decode_message(bytes(buf[self._start : pos]), self.max_bytes))
                    self._close(pos)
                    return True
        self._pos = max(self._pos, pos)
        return False


def decode_message(raw: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> dict | ProtocolError:
    """One complete JSON object -> dict with a string msg_type, or the ProtocolError saying why not."""
    if len(raw) > max_bytes:
        return ProtocolError(f"message longer than {max_bytes} bytes; discarded")
    try:
        msg = json.loads(raw)
    except RecursionError:
        return ProtocolError(f"JSON nested too deeply: {raw[:40]!r}")
    except ValueError as e:  # includes UnicodeDecodeError
        fixed = _COMMA_DECIMAL.sub(rb"\1\2.\3", raw)  # Unity in a comma-decimal locale: "steering":0,25
        try:
            msg = json.loads(fixed) if fixed != raw else None
        except (ValueError, RecursionError):
            msg = None
        if msg is None:
            return ProtocolError(f"malformed JSON ({e}): {raw[:80]!r}")
    return _checked(msg, raw)


def _checked(msg, raw: bytes) -> dict | ProtocolError:
    if not isinstance(msg, dict):
        return ProtocolError(f"message is not a JSON object: {raw[:80]!r}")
    if not isinstance(msg.get("msg_type"), str):
        return ProtocolError(f"message without a string msg_type: {raw[:80]!r}")
    return msg


def encode_message(msg: dict) -> bytes:
    """One outbound message as a JSON line."""
    return (json.dumps(msg) + "\n").encode()


# ---------------------------------------------------------------------------------------- reading values


def parse_float(value, what: str) -> float:
    """A finite float from a number or a string ("0.25", "0,25", " 1e-3 "); ProtocolError otherwise."""
    if isinstance(value, bool):
        raise ProtocolError(f"{what} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            f = float(value)
        except OverflowError:
            raise ProtocolError(f"{what} is out of range: a number too large for a float") from None
    elif isinstance(value, str) and len(value) <= 64:
        try:
            f = float(value.strip().replace(",", "."))
        except ValueError:
            raise ProtocolError(f"{what} must be a number, got {value!r}") from None
    else:
        raise ProtocolError(f"{what} must be a number, got {str(value)[:40]!r}")
    if not math.isfinite(f):
        raise ProtocolError(f"{what} must be finite, got {value!r}")
    return f


def parse_int(value, what: str) -> int:
    f = parse_float(value, what)
    if f != int(f):
        raise ProtocolError(f"{what} must be a whole number, got {value!r}")
    return int(f)


def parse_control(msg: dict) -> tuple[Control, list[str]]:
    """A `control` message -> clamped Control and warnings; a missing or bad value becomes 0 (safe)."""
    warnings: list[str] = []
    values = {}
    for key, lo, hi in (("steering", -1.0, 1.0), ("throttle", -1.0, 1.0), ("brake", 0.0, 1.0)):
        raw = msg.get(key, 0.0)
        try:
            v = parse_float(raw, key)
        except ProtocolError as e:
            warnings.append(f"{e}; using 0")
            v = 0.0
        if not lo <= v <= hi:
            warnings.append(f"{key} {v} outside [{lo}, {hi}]; clamped")
        values[key] = min(hi, max(lo, v))
    return Control(values["steering"], values["throttle"], values["brake"]), warnings


def parse_step_mode(msg: dict, default_time_step_s: float) -> tuple[bool, float]:
    """A `step_mode` message -> (synchronous, time_step [s]). time_step must lie in (0, 10] s."""
    mode = msg.get("step_mode")
    if not isinstance(mode, str) or mode.strip().lower() not in ("synchronous", "asynchronous"):
        raise ProtocolError(f"step_mode must be 'synchronous' or 'asynchronous', got {mode!r}")
    synchronous = mode.strip().lower() == "synchronous"
    time_step = default_time_step_s
    if msg.get("time_step") not in (None, ""):
        time_step = parse_float(msg["time_step"], "time_step")
        if not 0.0 < time_step <= 10.0:
            raise ProtocolError(f"time_step must be in (0, 10] seconds, got {time_step}")
    return synchronous, time_step


def parse_scene_name(msg: dict, known: tuple[str, ...]) -> str:
    name = msg.get("scene_name")
    if not isinstance(name, str):
        raise ProtocolError(f"load_scene needs a string scene_name, got {name!r}")
    if name not in known:
        raise ProtocolError(f"unknown scene {name!r}; known scenes: {', '.join(known)}")
    return name


def unity_yaw_deg(yaw_rad: float) -> float:
    """Twin yaw (CCW from +x/east) -> Unity euler y [deg] in [0, 360) (clockwise from +z/north)."""
    return (90.0 - math.degrees(yaw_rad)) % 360.0


def twin_yaw_rad(unity_deg: float) -> float:
    return math.atan2(math.sin(math.radians(90.0 - unity_deg)), math.cos(math.radians(90.0 - unity_deg)))


def yaw_quaternion(yaw_rad: float) -> tuple[float, float, float, float]:
    """Unity rotation (Qx, Qy, Qz, Qw) of a car heading `yaw_rad` on flat ground."""
    half = math.radians(unity_yaw_deg(yaw_rad)) / 2.0
    return 0.0, math.sin(half), 0.0, math.cos(half)


MAX_POSITION_M = 10_000.0  # [m] set_position beyond this is refused (tracks are tens of metres)


def parse_set_position(msg: dict) -> tuple[float, float, float | None]:
    """A `set_position` message -> (x [m], y [m], yaw [rad] or None when no quaternion was given)."""
    x = parse_float(msg.get("pos_x"), "pos_x")
    y = parse_float(msg.get("pos_z"), "pos_z")
    if max(abs(x), abs(y)) > MAX_POSITION_M:
        raise ProtocolError(f"position ({x}, {y}) farther than {MAX_POSITION_M:g} m from the origin")
    if all(k in msg for k in ("Qx", "Qy", "Qz", "Qw")):
        qx, qy, qz, qw = (parse_float(msg[k], k) for k in ("Qx", "Qy", "Qz", "Qw"))
        unity = math.degrees(math.atan2(2.0 * (qw * qy + qx * qz), 1.0 - 2.0 * (qx * qx + qy * qy)))
        return x, y, twin_yaw_rad(unity)
    return x, y, None


CAM_CONFIG_NUMBERS = (
    "fov",
    "fish_eye_x",
    "fish_eye_y",
    "img_w",
    "img_h",
    "img_d",
    "offset_x",
    "offset_y",
    "offset_z",
    "rot_x",
    "rot_y",
    "rot_z",
)


def normalize_cam_config(msg: dict) -> tuple[dict, list[str]]:
    """`cam_config` numbers as floats (strings and comma decimals read); unreadable ones and unknown keys are
    dropped, with a warning for the unreadable."""
    out: dict = {"msg_type": msg.get("msg_type", "cam_config")}
    if "img_enc" in msg:
        out["img_enc"] = msg["img_enc"]
    warnings = []
    for key in CAM_CONFIG_NUMBERS:
        if key not in msg:
            continue
        value = msg[key]
        try:
            out[key] = parse_float(value, key)
        except ProtocolError as e:
            warnings.append(f"{e}; ignored")
    return out, warnings


@dataclass(frozen=True)
class ImageFormat:
    """How camera frames go on the wire (cam_config img_enc and img_d)."""

    encoding: str = "JPG"  # JPG | PNG | TGA
    grayscale: bool = False  # img_d = 1: three identical channels, as the Unity sim does

    @classmethod
    def from_cam_config(cls, msg: dict, current: ImageFormat) -> tuple[ImageFormat, list[str]]:
        warnings = []
        enc = msg.get("img_enc", current.encoding)
        enc = str(enc).strip().upper()
        if enc in ("", "0"):  # gym-donkeycar's "use the default"
            enc = current.encoding
        elif enc == "JPEG":
            enc = "JPG"
        if enc not in IMAGE_ENCODINGS:
            warnings.append(
                f"img_enc {msg.get('img_enc')!r} unknown (JPG, PNG, TGA); keeping {current.encoding}"
            )
            enc = current.encoding
        gray = current.grayscale
        if msg.get("img_d") not in (None, ""):
            try:
                d = parse_int(msg["img_d"], "img_d")
            except ProtocolError as e:
                warnings.append(f"{e}; ignored")
            else:
                if d in (1, 3):
                    gray = d == 1
                elif d != 0:
                    warnings.append(f"img_d must be 1 or 3, got {d}; ignored")
        return cls(enc, gray), warnings


def encode_image(rgb: np.ndarray, fmt: ImageFormat = ImageFormat()) -> str:
    """An RGB uint8 frame -> base64 text of a JPG/PNG/TGA file (what PIL.Image.open reads back as RGB)."""
    import cv2  # lazily: the car image (Raspberry Pi) imports this module without OpenCV installed

    if fmt.grayscale:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    else:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if fmt.encoding == "TGA":  # OpenCV cannot write TGA; Pillow (a donkeycar dependency) can
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(bgr[:, :, ::-1]).save(buf, format="TGA")
        data = buf.getvalue()
    else:
        ext, params = (
            (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1])
            if fmt.encoding == "PNG"
            else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        )
        ok, enc = cv2.imencode(ext, bgr, params)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode a {rgb.shape} frame as {fmt.encoding}")
        data = enc.tobytes()
    return base64.b64encode(data).decode("ascii")


def decode_image(b64: str) -> np.ndarray:
    """base64 JPG/PNG/TGA text -> RGB uint8 (H, W, 3)."""
    import cv2  # lazily, as in encode_image

    data = base64.b64decode(b64)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is not None:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# ------------------------------------------------------------------------------------ outbound messages


def scene_selection_ready() -> dict:
    return {"msg_type": "scene_selection_ready", "loaded": "1"}


def scene_names(names) -> dict:
    return {"msg_type": "scene_names", "scene_names": list(names)}


def protocol_version() -> dict:
    return {"msg_type": "protocol_version", "version": PROTOCOL_VERSION}


def car_loaded() -> dict:
    return {"msg_type": "car_loaded"}


def node_position(index: int, x_m: float, y_m: float, yaw_rad: float) -> dict:
    qx, qy, qz, qw = yaw_quaternion(yaw_rad)
    return {
        "msg_type": "node_position",
        "index": int(index),
        "pos_x": float(x_m),
        "pos_y": 0.0,
        "pos_z": float(y_m),
        "Qx": qx,
        "Qy": qy,
        "Qz": qz,
        "Qw": qw,
    }


def collision_with_starting_line(time_stamp_s: float, index: int = 0) -> dict:
    return {
        "msg_type": "collision_with_starting_line",
        "starting_line_index": int(index),
        "timeStamp": float(time_stamp_s),
    }


def cross_start(lap_time_s: float) -> dict:
    return {"msg_type": "cross_start", "lap_time": float(lap_time_s)}


@dataclass(frozen=True)
class Motion:
    """Unity-frame accelerometer [m/s^2] and gyro [rad/s] (gyro_y > 0 = turning clockwise seen from above)."""

    accel: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gyro: tuple[float, float, float] = (0.0, 0.0, 0.0)


def motion_between(prev, now) -> Motion:
    """Finite differences of two Telemetry records (None or no elapsed time -> zeros)."""
    if prev is None:
        return Motion()
    dt = float(now.time_s) - float(prev.time_s)
    if not dt > 0.0:
        return Motion()
    dyaw = (float(now.yaw_rad) - float(prev.yaw_rad) + math.pi) % (2.0 * math.pi) - math.pi
    return Motion(
        accel=((float(now.vel_x) - float(prev.vel_x)) / dt, 0.0, (float(now.vel_y) - float(prev.vel_y)) / dt),
        gyro=(0.0, -dyaw / dt, 0.0),
    )


def telemetry_message(t, image_b64: str, motion: Motion = Motion()) -> dict:
    """A `telemetry` message with every key of docs/sim-protocol.md, extended telemetry included.

    `t` is a pitlane.twin.world.Telemetry. Values are plain floats/ints/strings (json cannot write numpy).
    """
    return {
        "msg_type": "telemetry",
        "steering_angle": float(t.steering),
        "throttle": float(t.throttle),
        "speed": abs(float(t.speed_mps)),
        "image": image_b64,
        "hit": str(t.hit),
        "time": float(t.time_s),
        "accel_x": motion.accel[0],
        "accel_y": motion.accel[1],
        "accel_z": motion.accel[2],
        "gyro_x": motion.gyro[0],
        "gyro_y": motion.gyro[1],
        "gyro_z": motion.gyro[2],
        "pitch": 0.0,
        "yaw": unity_yaw_deg(float(t.yaw_rad)),
        "roll": 0.0,
        "activeNode": int(t.active_node),
        "totalNodes": int(t.total_nodes),
        "cte": float(t.cte_m),
        "pos_x": float(t.x_m),
        "pos_y": 0.0,
        "pos_z": float(t.y_m),
        "vel_x": float(t.vel_x),
        "vel_y": 0.0,
        "vel_z": float(t.vel_y),
        "brake": float(t.brake),
        "laps": int(t.laps_completed),
    }


def encode_telemetry(t, image_b64: str, motion: Motion = Motion()) -> bytes:
    """`telemetry_message` as a JSON line, built without json re-scanning the frame's base64 text (which
    never needs escaping): the hot path of synchronous stepping."""
    msg = telemetry_message(t, "", motion)
    del msg["image"]
    return (json.dumps(msg)[:-1] + ', "image": "' + image_b64 + '"}\n').encode()
