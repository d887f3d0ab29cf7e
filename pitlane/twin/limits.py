"""What one client may take from a shared twin server: the limits, their units and their `serve` flags
(pure: no sockets; the server enforces them, the CLI and `python -m pitlane.twin.server` read them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from pitlane.errors import UserError

MAX_FRAME_PIXELS = 1920 * 1080  # [px] the largest camera the twin renders at all (CameraParams)


@dataclass(frozen=True)
class ServerLimits:
    """Per-client limits of the twin server. 0 means "no limit" for messages_per_s, scene_loads_per_min
    and idle_timeout_s, and "automatic" for workers."""

    max_clients: int = 32  # connections served at once; more are closed at once, with a log line
    max_camera_pixels: int = 640 * 480  # [px] largest img_w * img_h a cam_config may ask for
    messages_per_s: float = 2000.0  # [1/s] per client; beyond it the server reads that client more slowly
    scene_loads_per_min: float = 30.0  # [1/min] load_scene + regen_road per client; beyond, they wait
    idle_timeout_s: float = 300.0  # [s] no complete message (or nothing read) for this long: closed
    send_buffer_bytes: int = 256 << 10  # [bytes] socket send buffer and write queue per client
    workers: int = 0  # threads rendering big frames and loading scenes; 0: half the CPU cores, 1..4
    log_lines: int = 10  # warnings logged per client per log_interval_s; the rest are counted
    log_interval_s: float = 10.0  # [s]

    def __post_init__(self) -> None:
        checks = (
            (1 <= self.max_clients <= 100_000, f"max clients {self.max_clients} outside 1..100000"),
            (
                64 <= self.max_camera_pixels <= MAX_FRAME_PIXELS,
                f"max camera pixels {self.max_camera_pixels} outside 64..{MAX_FRAME_PIXELS} (up to 1920x1080)",
            ),
            (0 <= self.messages_per_s <= 1e6, f"message rate {self.messages_per_s}/s outside 0..1000000"),
            (
                0 <= self.scene_loads_per_min <= 1e5,
                f"scene loads {self.scene_loads_per_min}/min outside 0..100000",
            ),
            (0 <= self.idle_timeout_s <= 86_400, f"idle timeout {self.idle_timeout_s} s outside 0..86400"),
            (
                16 << 10 <= self.send_buffer_bytes <= 1 << 30,
                f"send buffer {self.send_buffer_bytes} bytes outside 16 KiB..1 GiB",
            ),
            (0 <= self.workers <= 64, f"workers {self.workers} outside 0..64"),
            (1 <= self.log_lines <= 10_000, f"log lines {self.log_lines} outside 1..10000"),
            (
                0.1 <= self.log_interval_s <= 86_400,
                f"log interval {self.log_interval_s} s outside 0.1..86400",
            ),
        )
        for ok, why in checks:
            if not ok:  # also False for NaN
                raise UserError(why)

    @property
    def worker_threads(self) -> int:
        return self.workers or max(1, min(4, (os.cpu_count() or 2) // 2))


# (field, flag, metavar, help) of each `pitlane twin serve` flag; the default comes from ServerLimits
FLAGS = (
    ("max_clients", "--max-clients", "N", "connections served at once; more are closed at once"),
    ("max_camera_pixels", "--max-camera-pixels", "PX", "largest camera (img_w*img_h) a client may ask for"),
    (
        "messages_per_s",
        "--max-message-rate",
        "PER_S",
        "messages per second per client; faster senders are read more slowly (0: no limit)",
    ),
    (
        "scene_loads_per_min",
        "--max-scene-loads",
        "PER_MIN",
        "load_scene + regen_road per minute per client; more wait (0: no limit)",
    ),
    (
        "idle_timeout_s",
        "--idle-timeout",
        "S",
        "close a client that sends no complete message, or reads nothing, for this long [s] (0: never)",
    ),
    (
        "send_buffer_bytes",
        "--send-buffer",
        "BYTES",
        "send buffer per client; a client that reads slower than the stream gets the newest frame, older ones are dropped",
    ),
    ("workers", "--workers", "N", "threads for big frames and scene loading (0: half the cores, 1..4)"),
    ("log_lines", "--log-lines", "N", "warnings logged per client per --log-interval; the rest are counted"),
    ("log_interval_s", "--log-interval", "S", "window of --log-lines [s]"),
)


def add_limit_arguments(parser) -> None:
    """The limits as flags of an argparse parser (`pitlane twin serve`, `python -m pitlane.twin.server`)."""
    defaults = ServerLimits()
    types = {f.name: f.type for f in fields(ServerLimits)}
    group = parser.add_argument_group("limits per client (a shared twin)")
    for name, flag, metavar, text in FLAGS:
        default = getattr(defaults, name)
        group.add_argument(
            flag,
            dest=name,
            type=float if types[name] in ("float", float) else int,
            default=default,
            metavar=metavar,
            help=f"{text} (default {default:g})",
        )


def limits_from_args(args) -> ServerLimits:
    return ServerLimits(**{name: getattr(args, name) for name, *_ in FLAGS})
