"""Fixtures for the twin's tests: a fresh twin server on an ephemeral port per test."""

from __future__ import annotations

import pytest

from pitlane.twin.server import TwinServer


@pytest.fixture
def server():
    srv = TwinServer(port=0, stream_hz=20.0, seed=0).start()
    yield srv
    srv.stop()
