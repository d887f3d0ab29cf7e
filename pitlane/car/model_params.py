"""The model manager's parameters: the one home of their defaults (the car config's `MODEL_*` keys).

Light on purpose (no numpy, requests or cryptography): the car app's `config.py`, which donkeycar loads at
every start, takes its `MODEL_*` defaults from `ManagerParams`, so each default is written once, here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ManagerParams:
    public_key: Path  # PEM public key of the releases this car trusts
    cache_dir: Path  # content-addressed cache + state.json
    ref_file: Path | None = None  # file holding the desired REGISTRY/REPO@sha256:... (a mounted ConfigMap)
    ref_env: str = "PITLANE_MODEL_REF"  # environment variable read when ref_file is unset or absent
    status_file: Path | None = None  # JSON status for people and tools (default: cache_dir/status.json)
    poll_s: float = 10.0  # [s] between checks of the desired reference
    pin_serial: int | None = None  # accept exactly this older release serial (an operator's explicit pin)
    canary_tolerance: float = 0.05  # [-] largest |output - recorded| on a canary frame
    latency_budget_ms: float = 25.0  # [ms] median inference time per frame (half a 20 Hz loop)
    registry_timeout_s: float = 10.0  # [s] per registry request
    camera_shape: tuple[int, int, int] = (120, 160, 3)  # (height, width, depth) of the camera's frames
    max_loop_failures: int = 3  # consecutive failed inferences in the loop that roll back a fresh model

    @classmethod
    def from_config(cls, cfg) -> ManagerParams:
        """From the car config's `MODEL_*` keys (checked at start by pitlane.car.settings.check_config)."""
        cache = Path(os.path.expanduser(cfg.MODEL_CACHE_DIR))
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
        )
