"""The digital twin: a headless DonkeyCar simulator (pure core: track, vehicle, camera, world; `Sim` wraps it)."""

from pitlane.twin.camera import Camera, CameraParams
from pitlane.twin.randomization import DomainRandomization
from pitlane.twin.scenes import SCENE_NAMES, generate_track, load_scene
from pitlane.twin.sim import Sim
from pitlane.twin.track import Track, TrackPoint, TrackStyle
from pitlane.twin.vehicle import Control, VehicleParams, VehicleState
from pitlane.twin.world import Telemetry, WorldParams, WorldState

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
