"""tests/release run under the shipped minimum gate policy, even inside a local release whose runner set
another (PITLANE_GATE_FLOOR reaches every step of `release run --local`, the tests Task's pytest included)."""

from __future__ import annotations

import pytest

from pitlane.release.policy import FLOOR_ENV


@pytest.fixture(autouse=True)
def shipped_gate_floor(monkeypatch):
    monkeypatch.delenv(FLOOR_ENV, raising=False)
