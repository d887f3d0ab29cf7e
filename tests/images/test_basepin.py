"""A cached Debian base is reused only when its sha256 is the one recorded for its inputs: a swapped or
changed tarball in the build cache is made again, and a fresh one that differs from the repository's pin is
refused. mmdebstrap is replaced by a stand-in that writes a tarball (the check is what is under test)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pitlane.errors import Refused
from pitlane.images import basepin, rootfs
from pitlane.images.plan import BuildConfig


@pytest.fixture
def made(monkeypatch, tmp_path):
    """Each call of the stand-in mmdebstrap writes CONTENT[0] as the tarball; returns the calls."""
    calls: list[list[str]] = []
    content = [b"debian trixie root filesystem"]

    def fake_run(argv, what, log=None, *, cwd=None, env=None):
        calls.append(argv)
        Path(argv[-2]).write_bytes(content[0])
        return ""

    monkeypatch.setattr(rootfs, "run", fake_run)
    monkeypatch.setattr(rootfs, "require", lambda tool: tool)
    return calls, content


def test_a_swapped_cached_base_is_made_again(made, tmp_path):
    calls, _ = made
    cfg = BuildConfig(repo=tmp_path, out=tmp_path)
    tar = rootfs.rootfs_tarball("amd64", cfg)
    assert len(calls) == 1
    record = json.loads(basepin.record_path(tar).read_text())
    assert record == {"inputs": basepin.inputs_digest("amd64", cfg), "sha256": basepin.file_digest(tar)}
    assert rootfs.rootfs_tarball("amd64", cfg) == tar and len(calls) == 1  # intact: reused
    tar.write_bytes(b"a root filesystem with a backdoor")  # someone with the build cache swapped it
    rootfs.rootfs_tarball("amd64", cfg)
    assert len(calls) == 2 and tar.read_bytes() == b"debian trixie root filesystem"
    basepin.record_path(tar).unlink()  # a tarball with no record (an older pitlane's) is made again too
    rootfs.rootfs_tarball("amd64", cfg)
    assert len(calls) == 3


def test_other_inputs_are_another_base(made, tmp_path):
    calls, _ = made
    rootfs.rootfs_tarball("amd64", BuildConfig(repo=tmp_path, out=tmp_path))
    rootfs.rootfs_tarball(
        "amd64", BuildConfig(repo=tmp_path, out=tmp_path, mirror="http://mirror.invalid/debian")
    )
    assert len(calls) == 2  # the record names its inputs: another mirror's tarball is not this one


def test_a_fresh_base_unlike_the_repositorys_pin_is_refused(made, tmp_path, monkeypatch):
    calls, content = made
    cfg = BuildConfig(repo=tmp_path, out=tmp_path)
    pins = tmp_path / "debian-bases.json"
    good = "sha256:" + hashlib.sha256(content[0]).hexdigest()
    pins.write_text(
        json.dumps(
            {"tarballs": {"trixie-amd64": {"inputs": basepin.inputs_digest("amd64", cfg), "sha256": good}}}
        )
    )
    monkeypatch.setattr(basepin, "PIN_FILE", pins)
    tar = rootfs.rootfs_tarball("amd64", cfg)
    assert basepin.file_digest(tar) == good
    content[0] = b"what a moved mirror serves"
    tar.unlink()
    with pytest.raises(Refused, match=r"debian-bases.json pins sha256:[0-9a-f]{64} for these inputs"):
        rootfs.rootfs_tarball("amd64", cfg)
    assert not tar.exists() and not tar.with_suffix(".tar.part").exists()  # nothing half-made is left


def test_the_repository_pins_no_moving_mirror():
    doc = json.loads(basepin.PIN_FILE.read_text())
    assert doc["mirror"].startswith("http://snapshot.debian.org/archive/debian/" + doc["snapshot"])
    for pin in doc["tarballs"].values():
        assert pin["sha256"].startswith("sha256:") and pin["inputs"].startswith("sha256:")
