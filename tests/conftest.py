"""Fixtures every test area may use: a real OCI registry (Debian's docker-registry) per test session, and
tiny real TFLite models (built in seconds, no training) for model bundles."""

from __future__ import annotations

import shutil

import pytest
from model_support import make_tflite

from pitlane.artifacts.registry import BINARY, Registry, RegistryConfig


@pytest.fixture(autouse=True)
def console_token_file(tmp_path_factory, monkeypatch):
    """A car built by any test (its console generates a token when none is set) keeps that token in a
    folder of its own test, not in the user's ~/.config/pitlane (child processes inherit the variable)."""
    path = tmp_path_factory.mktemp("console") / "console-token"
    monkeypatch.setenv("PITLANE_CONSOLE_TOKEN_FILE", str(path))
    return path


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


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """{"a", "b" (another linear model), "nan", "wide", "far", "c"} -> .tflite path, each in its own folder."""
    root = tmp_path_factory.mktemp("models")
    kinds = {
        "a": ("linear", 0),
        "b": ("linear", 1),
        "nan": ("nan", 2),
        "wide": ("wide", 3),
        "far": ("far", 4),
        "c": ("linear", 5),
    }
    return {
        name: make_tflite(root / name / "pilot.tflite", seed, kind) for name, (kind, seed) in kinds.items()
    }
