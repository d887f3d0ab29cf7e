"""The FLEET_* settings of a car app, checked at start (pitlane.car.settings.check_config asks here).

Every problem is one line naming the key, what it holds and what it must be, so the operator fixes them
all in one go before the car drives.
"""

from __future__ import annotations

import math
import os
from typing import Any

from pitlane.fleet import protocol
from pitlane.fleet.sender import SenderParams

BOOL_KEYS = ("FLEET_UPLOAD", "FLEET_DELETE_UPLOADED", "FLEET_DRIFT")


def _number(
    cfg: Any, key: str, low: float, low_open: bool, problems: list[str], integer: bool = False
) -> None:
    value = getattr(cfg, key, None)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        problems.append(f"{key} must be {'an integer' if integer else 'a number'}, got {value!r}")
    elif value < low or (low_open and value == low):
        problems.append(f"{key} must be {'>' if low_open else '>='} {low}, got {value!r}")


def parse_gateway(text: str) -> tuple[str, str]:
    """(scheme, "host:port") of FLEET_GATEWAY: http unless written https://host:port."""
    raw = text.strip()
    scheme = "http"
    for prefix in ("http://", "https://"):
        if raw.startswith(prefix):
            scheme, raw = prefix[:-3], raw[len(prefix) :]
    raw = raw.rstrip("/")
    host, sep, port = raw.rpartition(":")
    if not sep or not host or "/" in raw or not port.isdigit() or not 0 < int(port) < 65536:
        raise protocol.ProtocolError(f"FLEET_GATEWAY {text!r} is not HOST:PORT (e.g. nuc.local:8080)")
    return scheme, raw


def fleet_problems(cfg: Any) -> list[str]:
    """What is wrong with the FLEET_* keys of a config whose FLEET_BROKER is set (empty: nothing)."""
    problems: list[str] = []
    broker = getattr(cfg, "FLEET_BROKER", None)
    try:
        SenderParams.from_broker(broker if isinstance(broker, str) else "")
    except protocol.ProtocolError:
        problems.append(f"FLEET_BROKER must be HOST:PORT of the NUC's Mosquitto, got {broker!r}")
    name = getattr(cfg, "FLEET_CAR_NAME", None)
    if name is None:
        problems.append("FLEET_CAR_NAME must name this car (PITLANE_CAR_NAME) when FLEET_BROKER is set")
    else:
        try:
            protocol.check_car_name(name)
        except protocol.ProtocolError as exc:
            problems.append(f"FLEET_CAR_NAME: {exc}")
    password = getattr(cfg, "FLEET_PASSWORD", None)
    if password is not None and (not isinstance(password, str) or not password):
        problems.append("FLEET_PASSWORD must be the car's password (a non-empty string) or None")
    gateway = getattr(cfg, "FLEET_GATEWAY", None)
    if gateway is not None:
        try:
            parse_gateway(gateway if isinstance(gateway, str) else "")
        except protocol.ProtocolError as exc:
            problems.append(str(exc))
    state_dir = getattr(cfg, "FLEET_STATE_DIR", None)
    if not isinstance(state_dir, str) or not state_dir:
        problems.append(f"FLEET_STATE_DIR must be a folder path, got {state_dir!r}")
    _number(cfg, "FLEET_HEARTBEAT_S", 0.0, True, problems)
    _number(cfg, "FLEET_SPOOL_MAX_MB", 0.0, True, problems)
    _number(cfg, "FLEET_DRIFT_EVERY", 1, False, problems, integer=True)
    _number(cfg, "FLEET_STOP_BUDGET_S", 0.0, False, problems)
    for key in BOOL_KEYS:
        if not isinstance(getattr(cfg, key, None), bool):
            problems.append(f"{key} must be True or False, got {getattr(cfg, key, None)!r}")
    data = getattr(cfg, "DATA_PATH", None)
    if getattr(cfg, "AUTO_CREATE_NEW_TUB", False) and isinstance(data, str) and not os.path.isdir(data):
        problems.append(  # donkeycar's TubHandler would fail with a bare StopIteration
            f"DATA_PATH {data} does not exist; AUTO_CREATE_NEW_TUB (on where tubs go home) makes a tub per "
            "session inside it: create the folder"
        )
    image = getattr(cfg, "FLEET_IMAGE", None)
    if image is not None and not isinstance(image, str):
        problems.append(f"FLEET_IMAGE must be an image reference or None, got {image!r}")
    return problems
