"""The digital twin: a headless DonkeyCar simulator (pure core: track, vehicle, camera, world; `Sim` wraps it).

The names below load on first use (PEP 562), so importing one light module of the twin (the protocol, the
scenes, the world's constants, as the car app does) does not load the camera and with it OpenCV, which
the car image (Raspberry Pi) does not install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME = {
    "Camera": "camera",
    "CameraParams": "camera",
    "Control": "vehicle",
    "DomainRandomization": "randomization",
    "SCENE_NAMES": "scenes",
    "Sim": "sim",
    "Telemetry": "world",
    "Track": "track",
    "TrackPoint": "track",
    "TrackStyle": "track",
    "VehicleParams": "vehicle",
    "VehicleState": "vehicle",
    "WorldParams": "world",
    "WorldState": "world",
    "generate_track": "scenes",
    "load_scene": "scenes",
}

__all__ = [
    "Camera",
    "CameraParams",
    "Control",
    "DomainRandomization",
    "SCENE_NAMES",
    "Sim",
    "Telemetry",
    "Track",
    "TrackPoint",
    "TrackStyle",
    "VehicleParams",
    "VehicleState",
    "WorldParams",
    "WorldState",
    "generate_track",
    "load_scene",
]

if TYPE_CHECKING:
    from pitlane.twin.camera import Camera, CameraParams
    from pitlane.twin.randomization import DomainRandomization
    from pitlane.twin.scenes import SCENE_NAMES, generate_track, load_scene
    from pitlane.twin.sim import Sim
    from pitlane.twin.track import Track, TrackPoint, TrackStyle
    from pitlane.twin.vehicle import Control, VehicleParams, VehicleState
    from pitlane.twin.world import Telemetry, WorldParams, WorldState


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'pitlane.twin' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pitlane.twin.{_HOME[name]}"), name)
