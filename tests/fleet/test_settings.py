"""The FLEET_* settings: off by default, on from the deployment's environment, every bad value one line."""

from __future__ import annotations

import pytest

from pitlane.car.settings import load_car_config
from pitlane.errors import UserError
from pitlane.fleet.settings import parse_gateway


def test_the_fleet_is_off_unless_the_broker_is_set(monkeypatch):
    for name in ("PITLANE_FLEET_BROKER", "PITLANE_FLEET_GATEWAY", "PITLANE_CAR_NAME"):
        monkeypatch.delenv(name, raising=False)
    cfg = load_car_config(profile="twin")
    assert cfg.FLEET_BROKER is None and cfg.AUTO_CREATE_NEW_TUB is False


def test_the_deployments_environment_turns_it_on(monkeypatch, tmp_path):
    monkeypatch.setenv("PITLANE_FLEET_BROKER", "nuc.local:1883")
    monkeypatch.setenv("PITLANE_FLEET_GATEWAY", "nuc.local:8080")
    monkeypatch.setenv("PITLANE_CAR_NAME", "car-7")
    monkeypatch.setenv("PITLANE_FLEET_PASSWORD", "s3cret-s3cret-s3cret-s3cret")
    monkeypatch.setenv("PITLANE_STATE_DIR", str(tmp_path))
    cfg = load_car_config(profile="pi", overrides={"DATA_PATH": str(tmp_path)})
    assert (cfg.FLEET_BROKER, cfg.FLEET_CAR_NAME, cfg.FLEET_GATEWAY) == (
        "nuc.local:1883",
        "car-7",
        "nuc.local:8080",
    )
    assert str(tmp_path / "fleet") == cfg.FLEET_STATE_DIR and cfg.AUTO_CREATE_NEW_TUB is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"FLEET_BROKER": "nuc:port"}, "FLEET_BROKER must be HOST:PORT"),
        ({"FLEET_CAR_NAME": None}, "FLEET_CAR_NAME must name this car"),
        ({"FLEET_CAR_NAME": "Car_7"}, "FLEET_CAR_NAME: car name 'Car_7' is not valid"),
        ({"FLEET_GATEWAY": "nuc/v2"}, "FLEET_GATEWAY 'nuc/v2' is not HOST:PORT"),
        ({"FLEET_HEARTBEAT_S": 0}, "FLEET_HEARTBEAT_S must be > 0.0"),
        ({"FLEET_SPOOL_MAX_MB": "big"}, "FLEET_SPOOL_MAX_MB must be a number"),
        ({"FLEET_DRIFT_EVERY": 0}, "FLEET_DRIFT_EVERY must be >= 1"),
        ({"FLEET_UPLOAD": "yes"}, "FLEET_UPLOAD must be True or False"),
        ({"FLEET_PASSWORD": ""}, "FLEET_PASSWORD must be the car's password"),
        ({"FLEET_STOP_BUDGET_S": -1}, "FLEET_STOP_BUDGET_S must be >= 0.0"),
        (
            {"AUTO_CREATE_NEW_TUB": True, "DATA_PATH": "/nonexistent/data"},
            "DATA_PATH /nonexistent/data does not exist",
        ),
    ],
)
def test_each_bad_value_is_named(tmp_path, overrides, message):
    good = {"FLEET_BROKER": "nuc.local:1883", "FLEET_CAR_NAME": "car-7", "DATA_PATH": str(tmp_path)}
    with pytest.raises(UserError, match=message):
        load_car_config(profile="twin", overrides={**good, **overrides})


def test_all_bad_values_in_one_go(tmp_path):
    with pytest.raises(UserError) as err:
        load_car_config(
            profile="twin", overrides={"FLEET_BROKER": "x:y", "FLEET_CAR_NAME": None, "FLEET_DRIFT": 1}
        )
    assert all(key in str(err.value) for key in ("FLEET_BROKER", "FLEET_CAR_NAME", "FLEET_DRIFT"))


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("nuc.local:8080", ("http", "nuc.local:8080")),
        ("http://nuc:80/", ("http", "nuc:80")),
        ("https://nuc.example:443", ("https", "nuc.example:443")),
    ],
)
def test_gateway_forms(text, parsed):
    assert parse_gateway(text) == parsed
