"""`pitlane twin serve` starts the protocol server a real TCP client can reach; --help explains."""

import json
import socket
import subprocess
import sys
import time

import pytest
from helpers import free_port

from pitlane.cli import main


def test_serve_answers_a_client():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pitlane.cli", "twin", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        with conn:
            first = conn.makefile("r").readline()
        assert json.loads(first)["msg_type"] == "scene_selection_ready"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    "argv", [["twin", "--help"], ["twin", "snapshot", "--help"], ["twin", "serve", "--help"]]
)
def test_help_texts(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: pitlane twin" in capsys.readouterr().out


def test_serve_rejects_bad_port(capsys):
    assert main(["twin", "serve", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
