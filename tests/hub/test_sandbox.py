"""The sandbox a user's server runs in: its own home writable, every other home and the hub's files gone,
the rest read-only (real bubblewrap, where it is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pitlane.hub.sandbox import sandbox_argv, software_under_tmp, unavailable

pytestmark = pytest.mark.skipif(not shutil.which("bwrap"), reason="apt-get install bubblewrap (.ci/run does)")


def test_a_server_sees_only_its_own_home_under_the_hubs_data(tmp_path):
    data = tmp_path / "data"
    for folder in ("users/alice", "users/bob", "hub"):
        (data / folder).mkdir(parents=True)
    (data / "users" / "alice" / "secret.txt").write_text("alice's")
    (data / "hub" / "password").write_text("the hub's")
    script = (
        f"ls -A {data}/users; cat {data}/users/alice/secret.txt {data}/hub/password 2>&1; "
        f"echo mine > {data}/users/bob/note.txt && echo WROTE; touch /usr/pitlane-escape 2>&1"
    )
    argv = [*sandbox_argv(data / "users" / "bob", data), "sh", "-c", script]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    assert out.splitlines()[0] == "bob"
    assert "alice's" not in out and "the hub's" not in out and "No such file" in out
    assert "WROTE" in out and (data / "users" / "bob" / "note.txt").read_text() == "mine\n"
    assert "Read-only file system" in out and not Path("/usr/pitlane-escape").exists()
    assert unavailable(data) is None


def test_software_under_tmp_stays_readable_and_a_data_folder_inside_it_stays_hidden(tmp_path):
    """A CI clone lives under /tmp: its environment must survive the private /tmp (the server would not
    start), while the hub's data folder inside that clone stays hidden."""
    checkout = tmp_path / "clone"  # pytest's tmp_path is under /tmp
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "server").write_text("#!/bin/sh\necho SERVER STARTED\n")
    (checkout / ".venv" / "bin" / "server").chmod(0o755)
    data = checkout / "out" / "hub"
    for folder in ("users/alice", "users/bob"):
        (data / folder).mkdir(parents=True)
    (data / "users" / "alice" / "secret.txt").write_text("alice's")
    keep = software_under_tmp([checkout, Path("/usr")])
    assert keep == [checkout.resolve()]  # only what the private /tmp would hide
    script = f"{checkout}/.venv/bin/server; cat {data}/users/alice/secret.txt 2>&1; ls -A {data}/users"
    argv = [*sandbox_argv(data / "users" / "bob", data, keep=keep), "sh", "-c", script]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    assert out.splitlines()[0] == "SERVER STARTED"
    assert "alice's" not in out and out.splitlines()[-1] == "bob"
    hidden = subprocess.run(
        [*sandbox_argv(data / "users" / "bob", data), "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "SERVER STARTED" not in hidden.stdout  # without keep: the clone's environment is gone
