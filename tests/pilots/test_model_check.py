"""A corrupt model file is a one-line error, never a signal: truncations, bit flips, renamed files, digests."""

from __future__ import annotations

import os
import random
import signal
import time

import numpy as np
import pytest

from pitlane.cli import main
from pitlane.errors import UserError
from pitlane.pilots import model_check as probe
from pitlane.pilots.model import ModelPilot
from tests.pilots.test_model import _save_untrained

pytestmark = pytest.mark.slow  # builds and converts a real Keras model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A real donkeycar linear model (the default 120x160x3 input)."""
    return _save_untrained("linear", tmp_path_factory.mktemp("probe"))


def test_a_truncated_model_is_one_line(model, tmp_path):
    data = model.with_suffix(".tflite").read_bytes()
    for size in (0, 7, 100, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{size}.tflite"
        path.write_bytes(data[:size])
        with pytest.raises(UserError) as err:
            ModelPilot(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_bit_flipped_models_never_crash_this_process(model, tmp_path):
    data = model.with_suffix(".tflite").read_bytes()
    rng = random.Random(7)
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(30):
        flipped = bytearray(data)
        region = rng.choice([len(data), 4096])  # flips in the whole file, and in the header tables
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(min(region, len(data)))
            flipped[pos] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flip{i}.tflite"
        path.write_bytes(bytes(flipped))
        try:
            pilot = ModelPilot(path)
            pilot.run(np.zeros((120, 160, 3), np.uint8))
            outcomes["loaded"] += 1
        except UserError as err:
            assert "\n" not in str(err)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0, outcomes


def test_a_probe_child_killed_by_a_signal_is_a_verdict_not_a_crash(monkeypatch):
    """What the zygote does when TFLite segfaults in its child (loading by path, mmap, does on truncations)."""
    monkeypatch.setattr(probe, "_try_model", lambda data: os.kill(os.getpid(), signal.SIGSEGV))
    verdict = probe._judge(b"anything", timeout_s=30)
    assert verdict == {
        "ok": False,
        "crashed": True,
        "detail": "loading it crashed TFLite's interpreter (SIGSEGV)",
    }
    monkeypatch.setattr(probe, "_try_model", lambda data: time.sleep(60))
    assert "hung" in probe._judge(b"anything", timeout_s=0.5)["detail"]


@pytest.mark.parametrize(
    "source, name, message",
    [
        (".keras", "model.h5", "is a Keras model (.keras zip) named .h5; rename it to .keras"),
        (".tflite", "model.keras", "is a TFLite model named .keras; rename it to .tflite"),
        (".keras", "model.tflite", "is a Keras model (.keras zip) named .tflite; rename it to .keras"),
    ],
)
def test_a_renamed_model_is_named_in_one_line(model, tmp_path, source, name, message):
    path = tmp_path / name
    path.write_bytes(model.with_suffix(source).read_bytes())
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        ModelPilot(path)


def test_expected_digest_is_the_hook_for_signed_bundles(model):
    path = model.with_suffix(".tflite")
    digest = probe.sha256_hex(path.read_bytes())
    assert ModelPilot(path, expected_sha256=f"sha256:{digest}").sha256 == digest
    with pytest.raises(UserError, match="not the expected"):
        ModelPilot(path, expected_sha256="0" * 64)


def test_evaluate_and_gate_refuse_a_corrupt_model_with_exit_2(model, tmp_path, capsys):
    data = model.with_suffix(".tflite").read_bytes()
    bad = tmp_path / "interrupted.tflite"
    bad.write_bytes(data[: len(data) // 3])
    argv = ["evaluate", str(bad), "--laps", "1", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pitlane: error: model") and err.count("\n") == 1
    assert main(["gate", "--model", str(bad), "--out", str(tmp_path / "g")]) == 2


def test_the_probe_process_is_respawned_after_it_dies():
    prober = probe.Prober()
    assert not prober.probe(b"xxxxTFL3 garbage").ok
    assert prober._proc is not None
    os.kill(prober._proc.pid, 9)
    prober._proc.wait()
    assert not prober.probe(b"xxxxTFL3 garbage").ok and prober.respawns == 1
    prober.close()
