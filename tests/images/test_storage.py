"""buildah's storage driver: overlay where a test mount works, vfs elsewhere, and each in its own folder."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from pitlane.errors import BadInput
from pitlane.images import storage
from pitlane.images.plan import Store


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    monkeypatch.delenv(storage.DRIVER_ENV, raising=False)
    storage.overlay_mounts.cache_clear()
    yield
    storage.overlay_mounts.cache_clear()


def test_each_driver_has_its_own_store_and_vfs_keeps_its_old_folders(tmp_path):
    vfs, overlay = Store.under(tmp_path), Store.under(tmp_path, driver="overlay")
    assert (vfs.root, vfs.runroot, vfs.driver) == (tmp_path / "storage", tmp_path / "run", "vfs")
    assert (overlay.root, overlay.runroot) == (tmp_path / "storage-overlay", tmp_path / "run-overlay")
    assert overlay.buildah("images")[:2] == ["buildah", "--storage-driver"] and "overlay" in overlay.buildah()
    assert overlay.transport("x:1").startswith(f"containers-storage:[overlay@{tmp_path / 'storage-overlay'}+")
    with pytest.raises(ValueError, match="btrfs"):
        Store.under(tmp_path, driver="btrfs")


@pytest.mark.parametrize("forced", ["vfs", "overlay"])
def test_the_environment_forces_a_driver(tmp_path, monkeypatch, forced):
    monkeypatch.setenv(storage.DRIVER_ENV, forced)
    assert storage.open_store(tmp_path).driver == forced


def test_an_unknown_forced_driver_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(storage.DRIVER_ENV, "zfs")
    with pytest.raises(BadInput, match="PITLANE_STORAGE_DRIVER='zfs': choose one of overlay, vfs"):
        storage.pick_driver(tmp_path)


def test_without_root_the_store_is_vfs(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert storage.open_store(tmp_path).driver == "vfs"


def test_a_refused_mount_falls_back_to_vfs(tmp_path, monkeypatch):
    """A kernel or container that refuses overlayfs (mount exits non-zero): vfs, and the probe leaves nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    refusing = bin_dir / "mount"
    refusing.write_text("#!/bin/sh\necho 'mount: permission denied' >&2\nexit 32\n")
    refusing.chmod(refusing.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    out = tmp_path / "out"
    assert storage.pick_driver(out) == "vfs"
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="overlayfs mounts need root")
def test_the_probe_mounts_for_real_and_cleans_up(tmp_path):
    """As root on ext4 (this machine, CI) the kernel mounts it; nothing stays mounted or on disk."""
    out = tmp_path / "out"
    works = storage.overlay_mounts(out)
    with open("/proc/self/mounts") as mounts:
        assert str(out) not in mounts.read()
    assert list(out.iterdir()) == []
    with open("/proc/filesystems") as filesystems:
        kernel_has_overlay = "overlay" in filesystems.read()
    fs_type = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True).stdout
    if kernel_has_overlay and fs_type.strip() in ("ext2/ext3", "xfs"):  # an upper layer overlayfs accepts
        assert works
