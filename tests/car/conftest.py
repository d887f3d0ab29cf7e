"""Fixtures for the car app: a twin server on an ephemeral port, checked configs, a trained model."""

from __future__ import annotations

import logging
import os

import pytest

from pitlane.car.settings import load_car_config
from pitlane.twin.server import TwinServer


@pytest.fixture()
def twin():
    server = TwinServer("127.0.0.1", port=0).start()
    yield server
    server.stop()


@pytest.fixture()
def car_config(tmp_path):
    """The default car's config with overrides: twin profile at `port`, web controller on any free port."""

    def make(port: int | None = None, **overrides):
        values = {"WEB_CONTROL_PORT": 0, "DATA_PATH": str(tmp_path / "data"), "SIM_CONNECT_TIMEOUT_S": 5.0}
        if port is not None:
            values["SIM_PORT"] = port
        values.update(overrides)
        return load_car_config(profile=overrides.pop("PITLANE_PROFILE", "twin"), overrides=values)

    return make


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory):
    """A linear donkeycar model trained on expert laps in the twin (collect -> train, as the README's loop).

    PITLANE_TEST_CAR_MODEL=PATH reuses a model you trained before (saves minutes when iterating).
    """
    reuse = os.environ.get("PITLANE_TEST_CAR_MODEL")
    if reuse:
        return reuse
    from pitlane.data.collect import collect
    from pitlane.train.train import TrainParams, train_model

    logging.getLogger("donkeycar").setLevel(logging.WARNING)
    root = tmp_path_factory.mktemp("car-model")
    collect("generated_track", laps=6, out=root / "tub", noise="heavy", progress=False)
    record = train_model([root / "tub"], root / "pilot.keras", TrainParams(epochs=10, threads=2))
    return record.tflite_path or record.model_path
