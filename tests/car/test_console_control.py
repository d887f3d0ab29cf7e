"""Drive messages are checked field by field; the wheel lets one client drive, everyone STOP, and only who
stopped resume (pure: no server)."""

from __future__ import annotations

import pytest

from pitlane.car.console_control import (
    WEB_BUTTONS,
    DriveMessage,
    MessageError,
    Resume,
    Wheel,
    decode,
    parse_drive,
)
from pitlane.car.settings import DRIVE_MODES


def parse(data, calibrate=False):
    return parse_drive(data, modes=DRIVE_MODES, buttons=WEB_BUTTONS, calibrate=calibrate)


def test_donkeycars_drive_message_is_accepted():
    message = parse(
        {
            "angle": -1,
            "throttle": 0.5,
            "drive_mode": "local",
            "recording": False,
            "buttons": {"w1": True, "w3": False},
        }
    )
    assert message == DriveMessage(-1.0, 0.5, "local", False, ("w1",), False)
    assert parse({"angle": None, "throttle": None}) == DriveMessage()  # null: unchanged (donkeycar's rule)
    assert parse({}).drives("w1", "w2") is False
    assert parse({"buttons": {"w1": True}}).drives("w1", "w2") is False  # STOP is not driving
    assert parse({"buttons": {"w3": True}}).drives("w1", "w2") is True
    assert parse({"recording": True}).drives("w1", "w2") is True


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"throttle": "abc"}, "throttle must be a finite number in [-1, 1], got 'abc'"),
        ({"throttle": float("nan")}, "throttle must be a finite number"),
        ({"angle": float("-inf")}, "angle must be a finite number"),
        ({"angle": 1.0001}, "angle must be in [-1, 1], got 1.0001"),
        ({"throttle": True}, "throttle must be a finite number"),
        ({"drive_mode": "LOCAL"}, "drive_mode must be one of user, local_angle, local"),
        ({"recording": "true"}, "recording must be true or false"),
        ({"buttons": {"w6": True}}, "unknown button 'w6'; known: w1, w2, w3, w4, w5"),
        ({"buttons": {"w1": 1}}, "button w1 must be true or false"),
        ({"buttons": "w1"}, "buttons must be an object"),
        ({"release": 1}, "release must be true or false"),
        ({"angle": 0.1, "x" * 500: 1}, "unknown field"),
    ],
)
def test_every_field_is_type_and_range_checked(data, why):
    with pytest.raises(MessageError) as refused:
        parse(data)
    assert why in str(refused.value) and len(str(refused.value)) < 200


def test_calibration_takes_angle_and_throttle_only():
    assert parse({"angle": 0.2, "throttle": -0.1}, calibrate=True) == DriveMessage(0.2, -0.1)
    with pytest.raises(MessageError, match="PWM_STEERING_THROTTLE in myconfig.py"):
        parse({"config": {"STEERING_LEFT_PWM": 460}}, calibrate=True)
    with pytest.raises(MessageError, match="unknown field 'buttons'"):
        parse({"buttons": {"w1": True}}, calibrate=True)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("{", "not JSON"),
        ("[]", "got list"),
        ("3", "got int"),
        (b"\xff\xfe", "not JSON"),
        ("[" * 3000, "not JSON"),
    ],
)
def test_decode_refuses_anything_but_a_json_object(raw, why):
    with pytest.raises(MessageError, match=why):
        decode(raw)


def test_one_driver_at_a_time_until_it_leaves_or_releases():
    wheel = Wheel(idle_s=5.0)
    for client in ("a", "a", "b"):
        wheel.connect(client)
    assert wheel.take("a", 0.0) and not wheel.take("b", 0.1) and wheel.take("a", 100.0)
    assert wheel.expire(1000.0) is None  # a driver with a socket is not silent: it holds on
    assert not wheel.disconnect("a") and wheel.driver == "a"  # one of its two sockets
    assert wheel.disconnect("a") and wheel.driver is None  # the last one: it left
    assert wheel.take("b", 1.0) and not wheel.release("a") and wheel.release("b")


def test_a_driver_without_a_socket_lets_go_when_silent():
    wheel = Wheel(idle_s=5.0)
    assert wheel.take("post", 0.0)
    assert wheel.expire(5.0) is None and wheel.take("post", 4.0)
    assert wheel.expire(9.5) == "post" and wheel.driver is None and wheel.expire(20.0) is None


def test_resume_is_for_who_stopped_and_every_stop_must_be_lifted():
    wheel = Wheel(idle_s=5.0)
    assert wheel.resume("a") is Resume.NOT_STOPPED
    for client in ("a", "a", "b"):
        wheel.stop(client)
    assert wheel.stoppers == ["a", "b"]
    assert wheel.resume("c") is Resume.NOT_YOURS
    assert wheel.resume("a") is Resume.WAITING and wheel.resume("a") is Resume.NOT_YOURS
    assert wheel.resume("b") is Resume.RESUMED and wheel.stoppers == []
    wheel.stop("c")
    wheel.forget("c")  # its session ended: its STOP stays, only the physical controller lifts it now
    assert wheel.stoppers == ["c"] and wheel.resume("d") is Resume.NOT_YOURS
    wheel.clear_stops()
    assert wheel.stoppers == []
