"""Checks of command-line values before any work: output folders and files, ports, old option spellings."""

import os
import socket

import pytest

from pitlane.args import check_output_dir, check_output_file, check_port_free, modernize
from pitlane.errors import UserError


def test_output_dir_accepts_new_and_existing_folders(tmp_path):
    assert check_output_dir(tmp_path) == tmp_path
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checking creates nothing


def test_output_dir_refuses_a_file_and_a_path_below_a_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UserError, match=r"^--out .*afile is a file; give a folder"):
        check_output_dir(afile)
    with pytest.raises(UserError, match=r"^--report .*afile is a file, so the folder cannot be created"):
        check_output_dir(afile / "sub", "--report")


def test_output_file_refuses_a_folder_and_a_path_below_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="is a folder; give a file name"):
        check_output_file(tmp_path)
    with pytest.raises(UserError, match="is a file, so the file cannot be created"):
        check_output_file(tmp_path / "afile" / "x.png")
    assert check_output_file(tmp_path / "afile") == tmp_path / "afile"  # replacing a file is fine


def test_output_dir_refuses_an_unwritable_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: every folder is writable")
        with pytest.raises(UserError, match="is not writable"):
            check_output_dir(locked / "run")
        with pytest.raises(UserError, match="is not writable"):
            check_output_dir(locked)
    finally:
        locked.chmod(0o700)


def test_port_in_use_is_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(UserError, match=rf"^--web-port {port}: the port is in use"):
            check_port_free(port, "--web-port")
    check_port_free(0)


def test_modernize_replaces_old_spellings_and_warns():
    argv, warnings = modernize(["car", "run", "--duration", "5", "--report=out/x", "--", "--report"])
    assert argv == ["car", "run", "--max-seconds", "5", "--out=out/x", "--", "--report"]
    assert warnings == ["--duration is deprecated; use --max-seconds", "--report is deprecated; use --out"]
    assert modernize(["gate", "--out", "r"]) == (["gate", "--out", "r"], [])
