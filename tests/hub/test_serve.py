"""`pitlane hub serve`'s bad input: each mistake one line, before JupyterHub starts; the password's origin."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pitlane.errors import UserError
from pitlane.hub.config import PASSWORD_ENV, HubSettings
from pitlane.hub.serve import find_proxy, password, prepare

REPO = Path(__file__).resolve().parents[2]


def _hub(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pitlane.cli", "hub", "serve", *args]
    full = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=full, cwd=REPO)


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _hub("--port", str(port), "--data", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert f"--port {port}: the port is in use" in proc.stderr
    assert not (tmp_path / "hub").exists()  # nothing started, nothing written


def test_a_data_folder_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = _hub("--port", "0", "--data", str(blocker / "hub"))
    assert proc.returncode == 2 and f"--data {blocker / 'hub'}: cannot write there" in proc.stderr


@pytest.mark.parametrize(
    ("flag", "value"), [("--twin", "nohost"), ("--registry", "host:port"), ("--cull-idle", "0")]
)
def test_a_bad_flag_is_one_line(tmp_path, flag, value):
    proc = _hub("--data", str(tmp_path), flag, value)
    assert proc.returncode == 2 and proc.stderr.startswith(f"pitlane: error: {flag}")
    assert proc.stderr.count("\n") == 1


def test_a_short_password_is_refused_and_a_generated_one_is_kept_unprinted_later(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "short")
    with pytest.raises(UserError, match=f"{PASSWORD_ENV} is 5 characters"):
        password(tmp_path)
    monkeypatch.delenv(PASSWORD_ENV)
    (tmp_path / "hub").mkdir()
    value, origin = password(tmp_path)
    assert value in origin and "printed once" in origin
    assert (tmp_path / "hub" / "password").stat().st_mode & 0o777 == 0o600
    again, origin = password(tmp_path)
    assert again == value and value not in origin


def test_the_python_proxy_in_the_venv_is_never_chosen(tmp_path, monkeypatch):
    venv_bin = Path(sys.executable).parent
    monkeypatch.setenv("PATH", str(venv_bin))
    with pytest.raises(UserError, match="npm install -g configurable-http-proxy"):
        find_proxy(venv_bin)


def test_prepare_picks_free_ports_and_leaves_named_services_alone(tmp_path):
    s = prepare(HubSettings(data=str(tmp_path / "d"), port=0, twin="127.0.0.1:9091", sandbox=False))
    assert s.twin_port == 0 and s.registry_port and s.mlflow_port and s.hub_port != s.proxy_api_port
    env = s.user_environment()
    assert (
        env["PITLANE_TWIN"] == "127.0.0.1:9091" and env["PITLANE_REGISTRY"] == f"127.0.0.1:{s.registry_port}"
    )
    assert env["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{s.mlflow_port}/services/mlflow"
    assert {p.name for p in (tmp_path / "d").iterdir()} == {"hub", "users", "registry", "mlflow"}
