"""`pitlane twin check`: the real twin passes every check; broken simulators fail the right ones, saying why.

The broken simulators are the real twin behind a tampering proxy that drops or rewrites messages, so each
test breaks exactly one thing a gym-donkeycar client relies on.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading

import cv2
import pytest
from helpers import free_port

from pitlane.cli import main
from pitlane.twin import protocol as P
from pitlane.twin.conformance import CHECKS, FAIL, PASS, SKIP, WARN, conformant, run_checks
from pitlane.twin.server import TwinServer

CLOSE = object()  # a transform's answer: close this client's connection


@pytest.fixture(scope="module")
def twin():
    with TwinServer(port=0) as server:
        yield server


class TamperingProxy:
    """Listens on port 0; forwards each client to the twin, passing every message through a transform that
    returns the message (maybe changed), None (drop it), raw bytes (send those instead) or CLOSE."""

    def __init__(self, upstream_port: int, to_client=None, to_server=None):
        self.upstream_port = upstream_port
        self.to_client = to_client or (lambda m: m)
        self.to_server = to_server or (lambda m: m)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [conn, up]
            for target in (self._client_to_twin, self._twin_to_client):
                t = threading.Thread(target=target, args=(conn, up), daemon=True)
                t.start()
                self.threads.append(t)

    def _forward(self, out, transform, msg: dict) -> bool:
        new = transform(msg)
        if new is CLOSE:
            self._shut(self.sockets)
            return False
        if new is not None:
            out.sendall(new if isinstance(new, bytes) else P.encode_message(new))
        return True

    def _client_to_twin(self, conn, up) -> None:
        splitter = P.MessageSplitter()  # gym-donkeycar (and the checker) send objects without a separator
        try:
            while data := conn.recv(1 << 16):
                for msg in splitter.feed(data):
                    if isinstance(msg, dict) and not self._forward(up, self.to_server, msg):
                        return
        except OSError:
            pass
        finally:
            self._shut([conn, up])

    def _twin_to_client(self, conn, up) -> None:
        buf = b""
        try:
            while data := up.recv(1 << 18):
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not self._forward(conn, self.to_client, json.loads(line)):
                        return
        except OSError:
            pass
        finally:
            self._shut([conn, up])

    def __enter__(self) -> TamperingProxy:
        return self

    def __exit__(self, *exc) -> None:
        self._shut([self.listener, *self.sockets])
        for t in self.threads:
            t.join(5)
        assert not any(t.is_alive() for t in self.threads)

    @staticmethod
    def _shut(sockets) -> None:
        """shutdown() first: it wakes threads blocked in accept/recv on these sockets (close() alone does not)."""
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def by_name(results) -> dict:
    assert [r.name for r in results] == [name for name, _ in CHECKS]
    return {r.name: r for r in results}


def test_the_twin_passes_every_check(twin, capsys):
    assert main(["twin", "check", "--port", str(twin.port), "--timeout", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["conformant"] is True
    assert {c["name"]: c["status"] for c in report["checks"]} == {name: PASS for name, _ in CHECKS}
    rate = next(c for c in report["checks"] if c["name"] == "telemetry_rate")
    assert 10 <= rate["value"] <= 40, rate  # the twin streams at 20 Hz like the Unity sim


def test_missing_and_mistyped_telemetry_keys_fail(twin):
    def tamper(msg):
        if msg["msg_type"] == "telemetry":
            for key in ("gyro_x", "activeNode", "cte"):
                del msg[key]
            msg["hit"] = 0
        if msg["msg_type"] == "scene_selection_ready":  # plus one line that is not JSON
            return P.encode_message(msg) + b'{"msg_type": "telemetry", oops\n'
        return msg

    with TamperingProxy(twin.port, to_client=tamper) as proxy:
        results = by_name(run_checks("127.0.0.1", proxy.port, timeout=2, window_s=0.3))
    keys = results["telemetry_keys"]
    assert keys.status == FAIL
    assert "missing gyro_x, activeNode" in keys.reason and "hit is int 0, expected a string" in keys.reason
    assert (
        results["extended_telemetry"].status == FAIL and "missing cte" in results["extended_telemetry"].reason
    )
    assert results["framing"].status == FAIL and "malformed JSON" in results["framing"].reason
    for name in (
        "greeting",
        "load_scene",
        "telemetry_rate",
        "camera_image",
        "control",
        "reset_car",
        "step_mode",
    ):
        assert results[name].status == PASS, results[name]
    assert not conformant(list(results.values()))


def _reencode(msg, width: int, height: int):
    rgb = P.decode_image(msg["image"])
    ok, png = cv2.imencode(".png", cv2.resize(rgb, (width, height)))
    msg["image"] = base64.b64encode(png.tobytes()).decode()
    return msg


@pytest.mark.parametrize(
    "tamper, expected",
    [
        (lambda m: _reencode(m, 80, 60), "image is 80x60x3, cam_config asked 160x120"),
        (lambda m: {**m, "image": base64.b64encode(b"not a picture").decode()}, "image does not decode"),
        (lambda m: {**m, "image": 42}, "image is int 42, expected base64 text"),
    ],
)
def test_a_wrong_camera_image_fails(twin, tamper, expected):
    with TamperingProxy(
        twin.port, to_client=lambda m: tamper(m) if m["msg_type"] == "telemetry" else m
    ) as proxy:
        results = by_name(run_checks("127.0.0.1", proxy.port, timeout=2, window_s=0.3))
    assert results["camera_image"].status == FAIL
    assert expected in results["camera_image"].reason
    assert results["telemetry_keys"].status == PASS


def test_a_sim_that_never_sends_car_loaded_fails_and_skips_the_rest(twin, capsys):
    drop = {"car_loaded"}
    with TamperingProxy(twin.port, to_client=lambda m: None if m["msg_type"] in drop else m) as proxy:
        assert main(["twin", "check", "--port", str(proxy.port), "--timeout", "0.5"]) == 1
    table = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1] for line in table.splitlines()[4 : 4 + len(CHECKS)]}
    assert rows["greeting"] == rows["scene_names"] == PASS
    assert rows["load_scene"] == FAIL
    assert "no car_loaded within 0.5 s of load_scene" in table
    assert all(rows[name] == SKIP for name, _ in CHECKS[4:-1]) and rows["framing"] == PASS
    assert "not run: load_scene failed" in table and "NOT conformant" in table


def test_a_sim_without_protocol_version_or_step_mode_only_warns(twin):
    """Like an older Unity build: get_protocol_version and step_mode are ignored."""
    ignored = {"get_protocol_version", "step_mode"}
    with TamperingProxy(twin.port, to_server=lambda m: None if m["msg_type"] in ignored else m) as proxy:
        results = by_name(run_checks("127.0.0.1", proxy.port, timeout=1, window_s=0.3))
    assert results["protocol_version"].status == WARN
    assert results["step_mode"].status == WARN and "kept streaming" in results["step_mode"].reason
    assert all(
        r.status == PASS for name, r in results.items() if name not in ("protocol_version", "step_mode")
    )
    assert conformant(list(results.values()))


def test_a_sim_that_ignores_reset_car_fails_it(twin):
    with TamperingProxy(twin.port, to_server=lambda m: None if m["msg_type"] == "reset_car" else m) as proxy:
        results = by_name(run_checks("127.0.0.1", proxy.port, timeout=0.5, window_s=0.3))
    assert results["control"].status == PASS
    assert results["reset_car"].status == FAIL and "from its start" in results["reset_car"].reason


def test_a_connection_closed_mid_session_fails_that_step(twin):
    def close_on_throttle(msg):
        return CLOSE if msg["msg_type"] == "control" and float(msg["throttle"]) > 0 else msg

    with TamperingProxy(twin.port, to_server=close_on_throttle) as proxy:
        results = by_name(run_checks("127.0.0.1", proxy.port, timeout=1, window_s=0.3))
    assert results["control"].status == FAIL and "closed the connection" in results["control"].reason
    assert [results[n].status for n in ("reset_car", "step_mode", "exit_scene")] == [SKIP] * 3
    assert results["telemetry_rate"].status == PASS


def test_nothing_listening_exits_2_with_one_line(capsys):
    port = free_port()
    assert main(["twin", "check", "--port", str(port), "--timeout", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"nothing answers at 127.0.0.1:{port}" in err


def test_bad_timeout_is_a_user_error(capsys):
    assert main(["twin", "check", "--timeout", "0"]) == 2
    assert "--timeout" in capsys.readouterr().err
