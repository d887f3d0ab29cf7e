"""Fixtures every test area may use: a real OCI registry (Debian's docker-registry) per test session."""

from __future__ import annotations

import shutil

import pytest

from pitlane.artifacts.registry import BINARY, Registry, RegistryConfig


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A running `docker-registry` on 127.0.0.1 and a free port, storage in a temporary folder.

    `registry.host` is `127.0.0.1:PORT` (the registry part of a reference); tests use their own repositories.
    """
    if not shutil.which(BINARY):
        pytest.skip("Debian's docker-registry is not installed (apt-get install docker-registry)")
    reg = Registry(RegistryConfig(storage=tmp_path_factory.mktemp("registry"))).start()
    yield reg
    reg.stop()
