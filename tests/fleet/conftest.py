"""The NUC side's fixture: a real Mosquitto with pitlane's config and two cars' credentials (nuc_support)."""

from __future__ import annotations

import shutil

import pytest

from pitlane.fleet import broker as fb

from .nuc_support import start_fleet_broker


@pytest.fixture
def fleet_broker(tmp_path):
    if not shutil.which(fb.BINARY):
        pytest.skip("Debian's mosquitto is not installed (apt-get install mosquitto)")
    fleet = start_fleet_broker(tmp_path / "broker")
    yield fleet
    fleet.broker.stop()
