"""What the console's clients may ask of the car, and who may ask it: pure, so every rule is tested alone.

- `parse_drive` checks every field of donkeycar's drive message (POST /drive, /wsDrive, /wsCalibrate):
  types, ranges, known drive modes and buttons, no unknown fields. A message that fails changes nothing
  and its sender is told why in one line, so no request can put a string or a NaN into the drive loop.
- `Wheel` says who drives: one client at a time (the first that drives holds the wheel until it leaves or
  releases; the others watch); every client may STOP; the car resumes when every client that stopped it
  has resumed, or from the physical controller (the watchdog's own resume).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

DRIVE_FIELDS: tuple[str, ...] = ("angle", "throttle", "drive_mode", "recording", "buttons", "release")
CALIBRATE_FIELDS: tuple[str, ...] = ("angle", "throttle")  # donkeycar's `config` (PWM pulses) is refused
WEB_BUTTONS: tuple[str, ...] = ("w1", "w2", "w3", "w4", "w5")  # donkeycar's web controller buttons


class MessageError(ValueError):
    """A drive message that is refused whole: str(exc) is the one line its sender gets."""


@dataclass(frozen=True)
class DriveMessage:
    """A checked drive message; None (or absent) fields leave the car's state as it is (donkeycar's rule)."""

    angle: float | None = None  # [-1, 1] steering
    throttle: float | None = None  # [-1, 1]
    drive_mode: str | None = None  # one of the car's drive modes
    recording: bool | None = None
    pressed: tuple[str, ...] = ()  # buttons pushed (donkeycar latches only pushed ones)
    release: bool = False  # the driver lets go of the wheel (pitlane's addition)

    def drives(self, stop_button: str, resume_button: str) -> bool:
        """Whether it asks for anything beyond STOP, resume or release: only the driver may."""
        others = [b for b in self.pressed if b not in (stop_button, resume_button)]
        fields = (self.angle, self.throttle, self.drive_mode, self.recording)
        return any(v is not None for v in fields) or bool(others)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def decode(raw: str | bytes) -> dict:
    """The JSON object of a message body (any JSON error, nesting bomb included, is a MessageError)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MessageError(
            f'not JSON ({str(exc)[:60]}); send a JSON object such as {{"angle": 0.1}}'
        ) from None
    if not isinstance(data, dict):
        raise MessageError(f"a drive message is a JSON object, got {type(data).__name__}")
    return data


def _unit(data: dict, key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MessageError(f"{key} must be a finite number in [-1, 1], got {_show(value)}")
    if not -1.0 <= value <= 1.0:
        raise MessageError(f"{key} must be in [-1, 1], got {_show(value)}")
    return float(value)


def parse_drive(
    data: dict, *, modes: tuple[str, ...], buttons: tuple[str, ...], calibrate: bool = False
) -> DriveMessage:
    """Check a decoded drive (or, with calibrate, /wsCalibrate) message; MessageError names the field."""
    known = CALIBRATE_FIELDS if calibrate else DRIVE_FIELDS
    if calibrate and "config" in data:
        raise MessageError(
            "config (PWM pulses) cannot be set from the console; set PWM_STEERING_THROTTLE in myconfig.py"
        )
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise MessageError(f"unknown field {_show(unknown[0])[:40]}; known: {', '.join(known)}")
    angle, throttle = _unit(data, "angle"), _unit(data, "throttle")
    mode = data.get("drive_mode")
    if mode is not None and (not isinstance(mode, str) or mode not in modes):
        raise MessageError(f"drive_mode must be one of {', '.join(modes)}, got {_show(mode)}")
    recording = data.get("recording")
    if recording is not None and not isinstance(recording, bool):
        raise MessageError(f"recording must be true or false, got {_show(recording)}")
    release = data.get("release")
    if release is not None and not isinstance(release, bool):
        raise MessageError(f"release must be true or false, got {_show(release)}")
    pushes = data.get("buttons")
    pressed: list[str] = []
    if pushes is not None:
        if not isinstance(pushes, dict):
            raise MessageError(f'buttons must be an object such as {{"w1": true}}, got {_show(pushes)}')
        for name, value in pushes.items():
            if name not in buttons:
                raise MessageError(f"unknown button {_show(name)}; known: {', '.join(buttons)}")
            if not isinstance(value, bool):
                raise MessageError(f"button {name} must be true or false, got {_show(value)}")
            if value:
                pressed.append(name)
    return DriveMessage(angle, throttle, mode, recording, tuple(pressed), bool(release))


class Resume(Enum):
    """What a client's resume did."""

    RESUMED = "resumed"  # it was the last client holding a STOP: the car may drive again
    WAITING = "waiting"  # its STOP is lifted, another client's STOP still holds the car
    NOT_YOURS = "not_yours"  # it stopped nothing: only those who stopped (or the physical controller) resume
    NOT_STOPPED = "not_stopped"  # no client's STOP holds the car


class Wheel:
    """Who drives and who stopped the car, by client id; time is the caller's clock reading.

    A driver with a live websocket holds the wheel until its last socket closes or it releases; a driver
    without one (POST /drive only) lets go after `idle_s` without a message, as it cannot be seen leaving.
    """

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s  # [s]
        self.driver: str | None = None
        self.stoppers: list[str] = []  # clients whose STOP holds the car, in order
        self._last_s = 0.0  # [s] the driver's last message
        self._sockets: dict[str, int] = {}

    def connect(self, client: str) -> None:
        self._sockets[client] = self._sockets.get(client, 0) + 1

    def disconnect(self, client: str) -> bool:
        """A socket closed; True when that was the driver's last (it left: the wheel is free)."""
        left = self._sockets.get(client, 0) - 1
        if left > 0:
            self._sockets[client] = left
            return False
        self._sockets.pop(client, None)
        return self.release(client)

    def take(self, client: str, now_s: float) -> bool:
        """True when `client` drives now (the wheel was free, or it holds it already)."""
        if self.driver not in (None, client):
            return False
        self.driver, self._last_s = client, now_s
        return True

    def release(self, client: str) -> bool:
        if self.driver != client:
            return False
        self.driver = None
        return True

    def expire(self, now_s: float) -> str | None:
        """The driver dropped for silence (it has no socket and sent nothing for idle_s), or None."""
        driver = self.driver
        if driver is None or self._sockets.get(driver) or now_s - self._last_s <= self.idle_s:
            return None
        self.driver = None
        return driver

    def stop(self, client: str) -> None:
        if client not in self.stoppers:
            self.stoppers.append(client)

    def resume(self, client: str) -> Resume:
        if not self.stoppers:
            return Resume.NOT_STOPPED
        if client not in self.stoppers:
            return Resume.NOT_YOURS
        self.stoppers.remove(client)
        return Resume.WAITING if self.stoppers else Resume.RESUMED

    def clear_stops(self) -> None:
        """The car resumed without the console (the physical controller): no client's STOP holds it."""
        self.stoppers.clear()

    def forget(self, client: str) -> None:
        """A session ended: it drives no more. Its STOP stays: only the physical controller lifts it now."""
        self._sockets.pop(client, None)
        self.release(client)
