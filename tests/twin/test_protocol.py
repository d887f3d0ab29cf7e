"""The pure protocol layer: framing, reading client values, building what the simulator sends."""

from __future__ import annotations

import base64
import io
import json
import math
from typing import Any

import numpy as np
import pytest
from helpers import replace_float_notation
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pitlane.twin import protocol as P
from pitlane.twin.world import Telemetry

# ---------------------------------------------------------------------------------------------- framing


def feed_all(chunks, splitter=None):
    splitter = splitter or P.MessageSplitter()
    out = []
    for c in chunks:
        out += splitter.feed(c)
    return out


def test_back_to_back_objects_without_newline_as_gym_donkeycar_sends_them():
    out = feed_all([b'{"msg_type": "get_scene_names"}{"msg_type": "load_scene", "scene_name": "warehouse"}'])
    assert out == [{"msg_type": "get_scene_names"}, {"msg_type": "load_scene", "scene_name": "warehouse"}]


def test_messages_split_at_every_byte_boundary_reassemble():
    stream = b'{"msg_type": "a", "s": "x}{\\"y\\\\"}\n{"msg_type":"b","n":{"k":[1,2]}}{"msg_type":"c"}\n'
    out = feed_all([bytes([b]) for b in stream])
    assert out == [
        {"msg_type": "a", "s": 'x}{"y\\'},
        {"msg_type": "b", "n": {"k": [1, 2]}},
        {"msg_type": "c"},
    ]


def test_pretty_printed_message_over_several_lines():
    assert feed_all([b'{\n  "msg_type": "control",\n  "steering": "0.1"\n}\n']) == [
        {"msg_type": "control", "steering": "0.1"}
    ]


def test_truncated_line_is_reported_and_the_next_message_survives():
    out = feed_all([b'{"msg_type": "control", "steering": 0.1\n', b'{"msg_type": "get_scene_names"}\n'])
    assert isinstance(out[0], P.ProtocolError) and "cut short" in str(out[0])
    assert out[1:] == [{"msg_type": "get_scene_names"}]
    out = feed_all([b'{"msg_type": "contr\n{"msg_type": "reset_car"}\n'])
    assert isinstance(out[0], P.ProtocolError) and out[1:] == [{"msg_type": "reset_car"}]


def test_malformed_json_non_objects_missing_msg_type_and_stray_bytes_are_errors():
    out = feed_all(
        [
            b'{"msg_type": "control", "steering": }\n',
            b"[1, 2]\n",
            b'{"steering": "1"}\n',
            b'{"msg_type": 7}\n',
            b"hello\n",
            b'{"msg_type": "ok"}\n',
        ]
    )
    assert [type(o) for o in out[:-1]] == [P.ProtocolError] * 5
    assert "malformed JSON" in str(out[0]) and "msg_type" in str(out[2]) and "outside" in str(out[4])
    assert out[-1] == {"msg_type": "ok"}


def test_invalid_utf8_is_an_error_not_an_exception():
    out = feed_all([b'{"msg_type": "\xff\xfe"}\n{"msg_type": "ok"}\n'])
    assert isinstance(out[0], P.ProtocolError) and out[1] == {"msg_type": "ok"}


def test_oversized_message_is_discarded_and_the_stream_recovers():
    s = P.MessageSplitter(max_bytes=1000)
    out = feed_all(
        [b'{"msg_type": "x", "pad": "', b"a" * 600, b"a" * 600, b"a" * 5000, b'"}', b'{"msg_type": "ok"}'], s
    )
    assert len(out) == 2 and "longer than 1000" in str(out[0]) and out[1] == {"msg_type": "ok"}
    assert s.pending_bytes == 0


def test_deep_nesting_is_an_error_not_a_crash():
    deep = b'{"msg_type": "x", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    out = feed_all([deep + b'{"msg_type": "ok"}'])
    assert isinstance(out[0], P.ProtocolError) and out[1] == {"msg_type": "ok"}


def test_comma_decimal_numbers_from_a_comma_locale_are_repaired():
    out = feed_all([b'{"msg_type": "control", "steering": 0,25, "throttle":-0,5}'])
    assert out == [{"msg_type": "control", "steering": 0.25, "throttle": -0.5}]


def test_pending_bytes_counts_an_unfinished_message():
    s = P.MessageSplitter()
    s.feed(b'{"msg_type": "contr')
    assert s.pending_bytes == len(b'{"msg_type": "contr')


def test_a_message_cut_short_without_newline_loses_only_itself_brake_included():
    # gym-donkeycar writes json.dumps(msg) back to back; one write cut short must not eat the next ones
    stream = (
        b'{"msg_type": "control", "steering": "0.3", "thr'
        b'{"msg_type": "control", "steering": "0.0", "throttle": "0.2", "brake": "0.0"}'
        b'{"msg_type": "control", "steering": "0.0", "throttle": "0.0", "brake": "1.0"}'
    )
    for chunks in ([stream], [bytes([b]) for b in stream]):
        out = feed_all(chunks)
        assert isinstance(out[0], P.ProtocolError) and "cut short" in str(out[0])
        assert [m["brake"] for m in out[1:]] == ["0.0", "1.0"]
    # cut inside a string, after a backslash, and inside a nested value: the same
    for broken in (b'{"msg_type": "racer_info", "racer_name": "a\\', b'{"msg_type": "x", "a": [{"b": "\\'):
        out = feed_all([broken, b'{"msg_type": "reset_car"}', b'{"msg_type": "ok"}'])
        assert out[1:] == [{"msg_type": "reset_car"}, {"msg_type": "ok"}]


# Property-based fuzz of the framing: what real clients send (flat objects, msg_type first, any JSON text in
# the values, with or without newlines) split into arbitrary chunks, and arbitrary garbage between messages.
_VALUES = st.one_of(
    st.text(max_size=20),
    st.text(alphabet='{}[]"\\\n:, ', max_size=12),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["k", "{", '"', "msg"]), st.integers(0, 9), max_size=2),
)
_MESSAGES = st.builds(
    lambda kind, extra: {"msg_type": kind, **extra},
    st.text(max_size=12),
    st.dictionaries(st.text(max_size=6).filter(lambda k: k != "msg_type"), _VALUES, max_size=4),
)


def _encode(msg: dict, style: int) -> bytes:
    text = json.dumps(msg, ensure_ascii=style % 2 == 0, indent=None if style < 2 else 1)
    return text.encode() + (b"\n" if style in (1, 3) else b"")


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_MESSAGES, st.integers(0, 3)), max_size=6), st.lists(st.integers(0, 10**6)))
def test_fuzz_any_split_of_a_valid_stream_reads_the_same_messages(messages, cuts):
    stream = b"".join(_encode(m, style) for m, style in messages)
    want = [m for m, _ in messages]
    assert feed_all([stream]) == want
    assert feed_all(_split(stream, cuts)) == want


def _dicts_in_order(out, want) -> bool:
    it = iter(o for o in out if isinstance(o, dict))
    return all(any(got == w for got in it) for w in want)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=80), _MESSAGES), min_size=1, max_size=5),
    st.lists(st.integers(0, 10**6)),
    st.sampled_from([P.MAX_MESSAGE_BYTES, 512]),
)
def test_fuzz_garbage_between_messages_never_loses_a_later_complete_message(parts, cuts, max_bytes):
    """Arbitrary bytes (truncated messages, stray braces, quotes, backslashes, invalid UTF-8) before each
    message: every message still comes out, in order; the splitter never raises."""
    parts = [(g, m) for g, m in parts if len(json.dumps(m)) < max_bytes]
    stream = b"".join(g + json.dumps(m).encode() for g, m in parts)
    want = [m for _, m in parts]
    out = feed_all(_split(stream, cuts), P.MessageSplitter(max_bytes))
    assert all(isinstance(o, (dict, P.ProtocolError)) for o in out)
    assert _dicts_in_order(out, want)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 10**6)))
def test_fuzz_arbitrary_bytes_never_raise(data, cuts):
    s = P.MessageSplitter(max_bytes=256)
    out = feed_all(_split(data, cuts), s)
    assert all(isinstance(o, (dict, P.ProtocolError)) for o in out)
    assert s.pending_bytes <= len(data)
    assert s.feed(b'{"msg_type": "after"}')[-1:] == [{"msg_type": "after"}]  # and it recovers


# ------------------------------------------------------------------------------------------------ values


@pytest.mark.parametrize(
    "raw,want", [("0.25", 0.25), ("0,25", 0.25), (" -1e-3 ", -0.001), (3, 3.0), (0.5, 0.5), ("1", 1.0)]
)
def test_parse_float_reads_strings_numbers_and_comma_decimals(raw, want):
    assert P.parse_float(raw, "x") == pytest.approx(want)


@pytest.mark.parametrize(
    "raw",
    [
        "nan",
        "NaN",
        "inf",
        "-Infinity",
        float("nan"),
        float("inf"),
        "1e999",
        "abc",
        "",
        None,
        True,
        [1],
        {"a": 1},
        "1" * 100,
        10**400,
    ],
)
def test_parse_float_refuses_what_is_not_a_finite_number(raw):
    with pytest.raises(P.ProtocolError):
        P.parse_float(raw, "steering")


def test_parse_control_clamps_and_makes_bad_values_safe():
    c, warnings = P.parse_control(
        {"msg_type": "control", "steering": "2.5", "throttle": "-7", "brake": "0,5"}
    )
    assert (c.steering, c.throttle, c.brake) == (1.0, -1.0, 0.5)
    assert len(warnings) == 2 and all("clamped" in w for w in warnings)
    c, warnings = P.parse_control({"msg_type": "control", "steering": float("nan"), "throttle": "abc"})
    assert (c.steering, c.throttle, c.brake) == (0.0, 0.0, 0.0)
    assert len(warnings) == 2 and all("using 0" in w for w in warnings)
    c, warnings = P.parse_control(
        {"msg_type": "control", "steering": "-0.3", "throttle": "0.4", "brake": "0.0"}
    )
    assert (c.steering, c.throttle, c.brake) == (-0.3, 0.4, 0.0) and warnings == []


def test_parse_step_mode():
    assert P.parse_step_mode({"step_mode": "synchronous", "time_step": "0.1"}, 0.05) == (True, 0.1)
    assert P.parse_step_mode({"step_mode": "Asynchronous"}, 0.05) == (False, 0.05)
    for bad in (
        {"step_mode": "fast"},
        {"step_mode": 1},
        {"step_mode": "synchronous", "time_step": "0"},
        {"step_mode": "synchronous", "time_step": "-1"},
        {"step_mode": "synchronous", "time_step": "nan"},
        {"step_mode": "synchronous", "time_step": "11"},
    ):
        with pytest.raises(P.ProtocolError):
            P.parse_step_mode(bad, 0.05)


def test_parse_scene_name():
    assert P.parse_scene_name({"scene_name": "warehouse"}, ("warehouse",)) == "warehouse"
    with pytest.raises(P.ProtocolError, match="unknown scene 'moon'; known scenes: warehouse"):
        P.parse_scene_name({"scene_name": "moon"}, ("warehouse",))
    with pytest.raises(P.ProtocolError):
        P.parse_scene_name({}, ("warehouse",))


def test_unity_yaw_mapping():
    # twin: yaw CCW from east; Unity: clockwise from north (+z)
    assert P.unity_yaw_deg(0.0) == pytest.approx(90.0)  # facing east
    assert P.unity_yaw_deg(math.pi / 2) == pytest.approx(0.0)  # facing north
    assert P.unity_yaw_deg(math.pi) == pytest.approx(270.0)  # facing west
    for yaw in (-3.0, -1.0, 0.0, 0.7, 3.1):
        assert P.twin_yaw_rad(P.unity_yaw_deg(yaw)) == pytest.approx(yaw)


def test_set_position_quaternion_round_trip():
    for yaw in (-2.5, 0.0, 0.4, 1.9):
        q = P.yaw_quaternion(yaw)
        msg = {
            "pos_x": "1,5",
            "pos_y": "0",
            "pos_z": "-2",
            **dict(zip(("Qx", "Qy", "Qz", "Qw"), map(str, q), strict=True)),
        }
        x, y, got = P.parse_set_position(msg)
        assert (x, y) == (1.5, -2.0) and got == pytest.approx(yaw)
    assert P.parse_set_position({"pos_x": 1, "pos_z": 2}) == (1.0, 2.0, None)
    with pytest.raises(P.ProtocolError):
        P.parse_set_position({"pos_x": "1e9", "pos_z": "0"})


def test_image_format_from_cam_config():
    base = P.ImageFormat()
    assert P.ImageFormat.from_cam_config({"img_enc": "0", "img_d": "0"}, base) == (base, [])  # gym "defaults"
    assert P.ImageFormat.from_cam_config({"img_enc": "PNG", "img_d": "1"}, base)[0] == P.ImageFormat(
        "PNG", True
    )
    fmt, warnings = P.ImageFormat.from_cam_config({"img_enc": "BMP", "img_d": "2"}, base)
    assert fmt == base and len(warnings) == 2


def test_normalize_cam_config_reads_strings_and_drops_garbage():
    values, warnings = P.normalize_cam_config(
        {"msg_type": "cam_config", "fov": "90", "img_w": "0,0", "rot_x": "abc", "img_enc": "JPG"}
    )
    assert values == {"msg_type": "cam_config", "fov": 90.0, "img_w": 0.0, "img_enc": "JPG"}
    assert len(warnings) == 1 and "rot_x" in warnings[0]


# ------------------------------------------------------------------------------------------------ images


def _test_frame() -> np.ndarray:
    img = np.zeros((120, 160, 3), np.uint8)
    img[:, :, 0] = 200  # red
    img[60:, :, 2] = 180  # blue lower half
    img[:, 80:, 1] = 90
    return img


@pytest.mark.parametrize("enc", ["JPG", "PNG", "TGA"])
def test_encoded_frames_decode_to_the_same_rgb_with_pil_like_gym_donkeycar(enc):
    img = _test_frame()
    b64 = P.encode_image(img, P.ImageFormat(enc))
    pil = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))
    ours = P.decode_image(b64)
    assert pil.shape == ours.shape == (120, 160, 3)
    tol = 6 if enc == "JPG" else 0
    assert np.abs(pil.astype(int) - img).mean() <= tol
    assert np.abs(ours.astype(int) - img).mean() <= tol


def test_jpeg_header_and_grayscale_frames():
    img = _test_frame()
    assert base64.b64decode(P.encode_image(img))[:3] == b"\xff\xd8\xff"
    gray = P.decode_image(P.encode_image(img, P.ImageFormat("PNG", grayscale=True)))
    assert gray.shape == (120, 160, 3)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


# --------------------------------------------------------------------------------------------- telemetry

SPEC_TELEMETRY_KEYS = {
    "steering_angle",
    "throttle",
    "speed",
    "image",
    "hit",
    "time",
    "accel_x",
    "accel_y",
    "accel_z",
    "gyro_x",
    "gyro_y",
    "gyro_z",
    "pitch",
    "yaw",
    "roll",
    "activeNode",
    "totalNodes",
    "cte",
    "pos_x",
    "pos_y",
    "pos_z",
    "vel_x",
    "vel_y",
    "vel_z",
}


def _telemetry(**kw) -> Telemetry:
    base: dict[str, Any] = dict(
        time_s=1.0,
        steering=0.1,
        throttle=0.5,
        brake=0.0,
        speed_mps=2.0,
        x_m=3.0,
        y_m=4.0,
        yaw_rad=math.pi / 2,
        vel_x=0.0,
        vel_y=2.0,
        cte_m=-0.2,
        active_node=np.int64(7),
        total_nodes=600,
        hit="none",
        laps_completed=0,
        lap_time_s=None,
    )
    base.update(kw)
    return Telemetry(**base)


def test_telemetry_message_has_every_key_of_the_spec_as_json_numbers():
    msg = P.telemetry_message(_telemetry(), "aGVsbG8=")
    assert set(msg) >= SPEC_TELEMETRY_KEYS
    assert msg["msg_type"] == "telemetry" and msg["hit"] == "none" and msg["image"] == "aGVsbG8="
    line = P.encode_message(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = json.loads(line)
    for key in SPEC_TELEMETRY_KEYS - {"image", "hit"}:
        assert isinstance(back[key], (int, float)) and not isinstance(back[key], bool), key
    # the twin's north (y) is Unity's +z; heading north is Unity yaw 0
    assert (back["pos_x"], back["pos_y"], back["pos_z"]) == (3.0, 0.0, 4.0)
    assert (back["vel_x"], back["vel_z"], back["yaw"]) == (0.0, 2.0, 0.0)
    assert back["activeNode"] == 7 and back["totalNodes"] == 600 and back["cte"] == -0.2


def test_encode_telemetry_is_the_same_message_as_one_json_line():
    t = _telemetry()
    b64 = P.encode_image(_test_frame())
    line = P.encode_telemetry(t, b64, P.Motion(gyro=(0.0, 0.5, 0.0)))
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    assert json.loads(line) == P.telemetry_message(t, b64, P.Motion(gyro=(0.0, 0.5, 0.0)))


def test_outbound_json_survives_gym_donkeycars_comma_rewrite():
    msgs = [
        P.telemetry_message(_telemetry(active_node=12, total_nodes=300, speed_mps=3, cte_m=-1), "QUJD"),
        P.scene_names(["a", "b"]),
        P.node_position(3, 1.0, 2.0, 0.5),
        P.collision_with_starting_line(12.0),
        P.cross_start(11.5),
        P.protocol_version(),
        P.scene_selection_ready(),
        P.car_loaded(),
    ]
    for msg in msgs:
        line = P.encode_message(msg).decode().rstrip("\n")
        assert json.loads(replace_float_notation(line)) == msg


def test_motion_between_two_records():
    a = _telemetry(time_s=1.0, vel_x=1.0, vel_y=0.0, yaw_rad=0.0)
    b = _telemetry(time_s=1.5, vel_x=2.0, vel_y=1.0, yaw_rad=0.1)  # turning left (CCW)
    m = P.motion_between(a, b)
    assert m.accel == pytest.approx((2.0, 0.0, 2.0))
    assert m.gyro[1] == pytest.approx(-0.2)  # Unity: turning left is negative yaw rate
    assert P.motion_between(None, b) == P.Motion()
    assert P.motion_between(b, b) == P.Motion()
