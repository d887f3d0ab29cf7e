"""The model manager's parameters: the one home of their defaults (the car config's `MODEL_*` keys).

Light on purpose (no numpy, requests or cryptography): the car app's `config.py`, which donkeycar loads at
every start, takes its `MODEL_*` defaults from `ManagerParams`, so each default is written once, here.

What the car trusts ships in its image, not in its deployment: the release's model key (`SHIPPED_KEY`,
package data) and the lowest release serial it accepts (`shipped_min_serial`). Rotating the key or
withdrawing old releases is a code release; the ConfigMap names only the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

TRUST_DIR = Path(str(resources.files("pitlane.car") / "trust"))
SHIPPED_KEY = TRUST_DIR / "model.pub"  # the release's model public key (PEM, ECDSA P-256)
MIN_SERIAL_FILE = TRUST_DIR / "min_serial"


def shipped_min_serial(path: Path = MIN_SERIAL_FILE) -> int:
    """The lowest release serial this image accepts: the one integer in `path` ('#' lines are comments).
    A missing or unreadable file is a broken image: ValueError (the car does not start)."""
    lines = [
        ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if len(lines) != 1 or not lines[0].isdigit():
        raise ValueError(f"{path} must hold one release serial (an integer >= 0), holds {lines!r}")
    return int(lines[0])


@dataclass(frozen=True)
class ManagerParams:
    public_key: Path  # PEM public key of the releases this car trusts (default config: SHIPPED_KEY)
    cache_dir: Path  # content-addressed cache + state.json (the serial floor): on a persistent volume
    ref_file: Path | None = None  # file holding the desired REGISTRY/REPO@sha256:... (a mounted ConfigMap)
    ref_env: str = "PITLANE_MODEL_REF"  # environment variable read when ref_file is unset or absent
    status_file: Path | None = None  # JSON status for people and tools (default: cache_dir/status.json)
    poll_s: float = 10.0  # [s] between checks of the desired reference
    pin_serial: int | None = None  # accept exactly this older release serial (an operator's explicit pin)
    canary_tolerance: float = 0.05  # [-] largest |output - recorded| on a canary frame
    latency_budget_ms: float = 25.0  # [ms] median inference time per frame (half a 20 Hz loop)
    registry_timeout_s: float = 10.0  # [s] per registry socket operation (connect, one read)
    camera_shape: tuple[int, int, int] = (120, 160, 3)  # (height, width, depth) of the camera's frames
    max_loop_failures: int = 3  # consecutive failed inferences in the loop that roll back a fresh model
    pull_deadline_s: float = 300.0  # [s] wall clock for one whole pull, however slowly the registry sends
    start_deadline_s: float = 15.0  # [s] the pull tried before the loop starts (a slow registry must not
    #                                  hold the car's start: the worker pulls on, the car drives meanwhile)
    retry_min_s: float = 10.0  # [s] first wait before trying a model that could not be taken again
    retry_max_s: float = 600.0  # [s] the longest such wait (the waits double up to it)
    stale_s: float = 900.0  # [s] a model that differs from the desired one this long is "stale" (or frozen)
    max_serial_jump: int = 1000  # a release serial more than this above the car's floor is refused
    min_serial: int = field(default_factory=shipped_min_serial)  # the image's lowest accepted serial

    @classmethod
    def from_config(cls, cfg) -> ManagerParams:
        """From the car config's `MODEL_*` keys (checked at start by pitlane.car.settings.check_config)."""
        cache = Path(os.path.expanduser(cfg.MODEL_CACHE_DIR))
        defaults = cls(public_key=SHIPPED_KEY, cache_dir=cache)
        return cls(
            public_key=Path(os.path.expanduser(cfg.MODEL_PUBLIC_KEY)),
            cache_dir=cache,
            ref_file=Path(cfg.MODEL_REF_FILE) if cfg.MODEL_REF_FILE else None,
            ref_env=cfg.MODEL_REF_ENV,
            status_file=Path(cfg.MODEL_STATUS_FILE) if cfg.MODEL_STATUS_FILE else None,
            poll_s=float(cfg.MODEL_POLL_S),
            pin_serial=cfg.MODEL_PIN_SERIAL,
            canary_tolerance=float(cfg.MODEL_CANARY_TOLERANCE),
            latency_budget_ms=float(cfg.MODEL_LATENCY_BUDGET_MS),
            registry_timeout_s=float(cfg.MODEL_REGISTRY_TIMEOUT_S),
            camera_shape=(cfg.IMAGE_H, cfg.IMAGE_W, cfg.IMAGE_DEPTH),
            # keys a car app from before them lacks take the defaults (their one home is above)
            pull_deadline_s=float(getattr(cfg, "MODEL_PULL_DEADLINE_S", defaults.pull_deadline_s)),
            retry_min_s=float(getattr(cfg, "MODEL_RETRY_MIN_S", defaults.retry_min_s)),
            retry_max_s=float(getattr(cfg, "MODEL_RETRY_MAX_S", defaults.retry_max_s)),
            stale_s=float(getattr(cfg, "MODEL_STALE_S", defaults.stale_s)),
            max_serial_jump=int(getattr(cfg, "MODEL_MAX_SERIAL_JUMP", defaults.max_serial_jump)),
        )
