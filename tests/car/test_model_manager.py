"""The model manager on the car, through the real registry and a real donkeycar vehicle loop.

Every bad input is refused with a reason a person understands, the loop keeps driving on the last good
model, and nothing unverified reaches the interpreter: the loader records the sha256 of every file it was
handed, and the tests compare that list with the digests that were signed with the car's key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_until
from model_support import blob_file, release_bundle, release_key, with_serial, with_tflite

from pitlane.artifacts import bundle, oci, signing
from pitlane.artifacts.relay import Relay
from pitlane.car.model_manager import MEMORY_KEYS, Loaded, ManagerParams, ModelManager
from pitlane.car.parts import SafePilot
from pitlane.errors import SignatureError

pytestmark = pytest.mark.slow  # real TFLite models, a registry and a 20 Hz loop: minutes on 2 cores


@pytest.fixture(scope="module")
def world(registry, models, tmp_path_factory):
    """Keys, a client, and bundle A (serial 1) and B (serial 2) packed once for the module."""
    root = tmp_path_factory.mktemp("mm")
    key, pub = release_key(root)
    intruder, _ = release_key(root, "intruder")
    a = bundle.pack(models["a"], gate_report=None, serial=1)
    b = bundle.pack(models["b"], gate_report=None, serial=2)
    return dict(key=key, pub=pub, intruder=intruder, a=a, b=b, client=oci.Client(registry.host), root=root)


def current_model(manager: ModelManager) -> Loaded:
    """The model the manager runs now (the test fails here when it runs none)."""
    assert manager.current is not None, manager.error
    return manager.current


def publish(world, registry, b: bundle.Bundle, repo: str = "car/pilot", key="key") -> oci.Reference:
    """Push `b`; with a key, sign and attest it as the release does (its serial signed, its gate passed)."""
    if key:
        return release_bundle(world["client"], b, oci.Reference(registry.host, repo), world[key])
    return bundle.push(world["client"], b, oci.Reference(registry.host, repo), ())


class Loads:
    """The manager's loader, recording the sha256 of the bytes handed to the interpreter."""

    def __init__(self, camera_shape=(120, 160, 3)) -> None:
        self.digests: list[str] = []
        self.camera_shape = camera_shape

    def __call__(self, data: bytes, name):
        from pitlane.pilots.model import ModelPilot

        self.digests.append("sha256:" + hashlib.sha256(data).hexdigest())
        return ModelPilot(name, camera_shape=self.camera_shape, content=data)


class Recorder:
    def __init__(self) -> None:
        self.loops: list[tuple[float, object, object]] = []

    def run(self, angle, digest, state):
        self.loops.append((time.perf_counter(), digest, state))


class Loop:
    """A donkeycar Vehicle at 20 Hz: frames -> model manager -> SafePilot(managed pilot) -> recorder."""

    def __init__(self, manager: ModelManager, frame: np.ndarray) -> None:
        import donkeycar as dk

        self.rec = Recorder()
        self.vehicle = dk.vehicle.Vehicle()
        self.vehicle.add(lambda_part(frame), outputs=["cam/image_array"])
        self.vehicle.add(manager, outputs=MEMORY_KEYS, threaded=True)
        self.vehicle.add(
            SafePilot(manager.pilot), inputs=["cam/image_array"], outputs=["pilot/angle", "pilot/throttle"]
        )
        self.vehicle.add(self.rec, inputs=["pilot/angle", "model/digest", "model/state"])
        self.thread = threading.Thread(
            target=self.vehicle.start, kwargs=dict(rate_hz=20, max_loop_count=10**6)
        )
        self.thread.start()

    def loops(self) -> int:
        return len(self.rec.loops)

    def stop(self) -> None:
        self.vehicle.on = False
        self.thread.join(10)


def lambda_part(frame):
    class Frames:
        def run(self):
            return frame

    return Frames()


def params(world, tmp_path, **kw) -> ManagerParams:
    base = ManagerParams(
        public_key=world["pub"],
        cache_dir=tmp_path / "cache",
        ref_file=tmp_path / "model-ref",
        poll_s=3600.0,
        latency_budget_ms=200.0,  # a shared 2-core CI machine; speed is measured in bench/, not here
        retry_min_s=0.01,  # a refusal is tried again at the next poll (the backoff has tests of its own)
        retry_max_s=0.02,
    )
    return dataclasses.replace(base, **kw)


def set_desired(manager: ModelManager, text: str) -> None:
    assert manager.params.ref_file is not None
    manager.params.ref_file.write_text(f"# pitlane model (written by the deployment)\n{text}\n")
    manager.poll_now()


def expect_refusal(manager: ModelManager, loop: Loop, text: str, why: str, running: oci.Reference) -> None:
    before_err = manager.error
    set_desired(manager, text)
    assert wait_until(lambda: manager.error != before_err and manager.state != "checking", 60), (
        manager.status()
    )
    assert why in manager.error, manager.error
    assert manager.state == "refused"
    assert manager.current is not None and current_model(manager).ref == running
    n = loop.loops()
    assert wait_until(lambda: loop.loops() >= n + 3, 5), "the loop stopped"
    assert loop.rec.loops[-1][1] == running.digest


def test_bad_inputs_in_the_loop(registry, models, world, tmp_path):
    c = world["client"]
    ref_a = publish(world, registry, world["a"])
    loads = Loads()
    manager = ModelManager(params(world, tmp_path), loader=loads)
    frame = bundle.read_canary(world["a"].layers[-1][2], [[0, 0]] * bundle.CANARY_FRAMES)[0][0]
    loop = Loop(manager, frame)
    try:
        set_desired(manager, str(ref_a))
        assert wait_until(lambda: manager.state == "running" and loop.rec.loops[-1][1] == ref_a.digest, 60), (
            manager.status()
        )
        signed_ok = [world["a"].layers[0][2]]
        good = {oci.sha256_digest(signed_ok[0])}
        assert set(loads.digests) == good

        # a tag instead of a digest
        expect_refusal(manager, loop, f"{registry.host}/car/pilot:latest", "is a tag", ref_a)
        # missing signature
        unsigned = publish(world, registry, with_serial(world["b"], 5), key=None)
        expect_refusal(manager, loop, str(unsigned), "is not signed", ref_a)
        # wrong key
        intruded = publish(world, registry, with_serial(world["b"], 6), key="intruder")
        expect_refusal(manager, loop, str(intruded), "does not verify with this public key", ref_a)
        # a (valid) signature for another digest, copied under this one's tag
        other = publish(world, registry, with_serial(world["b"], 7), key=None)
        assert ref_a.digest is not None and other.digest is not None
        sig = c.get_manifest("car/pilot", signing.suffix_tag(ref_a.digest, "sig"))
        c.push_manifest("car/pilot", sig.data, signing.suffix_tag(other.digest, "sig"))
        expect_refusal(manager, loop, str(other), "signs another digest", ref_a)
        # tampered layer (at rest in the registry): a signed bundle of model c, then its bytes changed
        tampered = publish(world, registry, bundle.pack(models["c"], gate_report=None, serial=8))
        layer = blob_file(registry, oci.sha256_digest(models["c"].read_bytes()))
        original = layer.read_bytes()
        layer.write_bytes(original[:-10] + b"0123456789")
        expect_refusal(manager, loop, str(tampered), "does not match its digest", ref_a)
        layer.write_bytes(original)  # the registry is the session's: later tests push model c again
        # tampered config
        cfg_tampered = publish(world, registry, with_serial(world["b"], 9))
        config = blob_file(registry, oci.sha256_digest(with_serial(world["b"], 9).config))
        original = config.read_bytes()
        config.write_bytes(original.replace(b'"serial":9', b'"serial":99'))
        expect_refusal(manager, loop, str(cfg_tampered), "more than the", ref_a)  # its descriptor's size
        config.write_bytes(original)
        # signed models that load but must not drive: NaN outputs, wrong output shape, far from the canary
        nan = publish(world, registry, with_serial(with_tflite(world["a"], models["nan"].read_bytes()), 10))
        expect_refusal(manager, loop, str(nan), "non-finite outputs", ref_a)
        wide = publish(world, registry, with_serial(with_tflite(world["a"], models["wide"].read_bytes()), 11))
        expect_refusal(manager, loop, str(wide), "does not load", ref_a)
        far = publish(world, registry, with_serial(with_tflite(world["a"], models["far"].read_bytes()), 12))
        expect_refusal(manager, loop, str(far), "differ from the recorded ones", ref_a)
        # nothing unsigned or tampered was ever handed to the interpreter; only signed bundles were loaded
        signed_loaded = {oci.sha256_digest(models[k].read_bytes()) for k in ("a", "nan", "wide", "far")}
        assert set(loads.digests) <= signed_loaded
        assert oci.sha256_digest(models["c"].read_bytes()) not in loads.digests
        assert oci.sha256_digest(models["b"].read_bytes()) not in loads.digests

        # registry down in the middle of the pull (a relay that cuts the link), then back
        ref_b = publish(world, registry, with_serial(world["b"], 20))
        relay = Relay(registry.host, cut_after=3000)
        via_relay = oci.Reference(relay.host, ref_b.repository, None, ref_b.digest)
        try:
            expect_refusal(manager, loop, str(via_relay), f"registry {relay.host}", ref_a)
            assert "will retry" in manager.error
            relay.reset(cut_after=None)
            manager.poll_now()
            assert wait_until(lambda: loop.rec.loops[-1][1] == ref_b.digest, 60), manager.status()
        finally:
            relay.close()
        assert current_model(manager).serial == 20 and manager.state == "running"
        # a replayed older release (validly signed serial 1) is a rollback attempt
        expect_refusal(manager, loop, str(ref_a), "older than serial 20", via_relay)
        assert wait_until(lambda: "older than serial 20" in manager.status_file.read_text(), 5)
        assert str(ref_b.digest) in manager.status_file.read_text()
        # the deployment goes back to what runs: no error now, the refusal kept as the last one
        set_desired(manager, str(via_relay))
        assert wait_until(lambda: manager.state == "running" and manager.error == "", 10)
        assert "older than serial 20" in manager.last_error
    finally:
        loop.stop()
    # the loop ran all along on verified models only (what a swap costs in loop time: bench_model_update.py)
    assert {d for _, d, _ in loop.rec.loops} <= {"", None, ref_a.digest, ref_b.digest}


def test_offline_start_from_cache_truncated_file_and_pin(registry, models, world, tmp_path):
    ref_a = publish(world, registry, world["a"], repo="car/offline")
    ref_b = publish(world, registry, world["b"], repo="car/offline")
    p = params(world, tmp_path)
    m = ModelManager(p, loader=Loads())
    set_desired(m, str(ref_b))
    m.check_once()
    assert m.swap_if_ready() and current_model(m).ref == ref_b
    m.shutdown()
    # restart with the registry unreachable: the cache alone starts the car, verified again
    offline = dataclasses.replace(p, ref_file=None, ref_env="PITLANE_TEST_NO_SUCH_VAR")
    loads = Loads()
    m2 = ModelManager(offline, loader=loads)
    assert current_model(m2).ref == ref_b and m2.state == "running"
    assert loads.digests == [oci.sha256_digest(models["b"].read_bytes())]
    assert m2.outputs()[:3] == (ref_b.digest, 2, "running")
    m2.shutdown()
    # a truncated cache file: refused at start (nothing loaded), then pulled again from the registry
    cache_file = m2.cache.path(oci.sha256_digest(models["b"].read_bytes()))
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    loads = Loads()
    m3 = ModelManager(offline, loader=loads)
    assert m3.current is None and "corrupt" in m3.error and loads.digests == []
    assert m3.refusal() is not None  # the autopilot stays refused: the car drives by hand only
    m4 = ModelManager(p, loader=loads)
    set_desired(m4, str(ref_b))
    m4.check_once()
    assert m4.swap_if_ready() and current_model(m4).ref == ref_b
    # the older serial is refused ... unless the operator pins it
    set_desired(m4, str(ref_a))
    m4.check_once()
    assert "older than serial 2" in m4.error and current_model(m4).ref == ref_b
    m5 = ModelManager(dataclasses.replace(p, pin_serial=1), loader=loads)
    set_desired(m5, str(ref_a))
    m5.check_once()
    assert m5.swap_if_ready() and current_model(m5).ref == ref_a, m5.error
    for m in (m3, m4, m5):
        m.shutdown()


def test_every_refusal_is_tried_again_after_a_backoff_that_doubles_and_is_capped(registry, world, tmp_path):
    """A registry down, a digest not pushed yet, a wrong signature: none is skipped for good (the next try
    comes after 10 s, 20 s, 40 s ... at most 10 min, each a random 50-100 % of it), none is tried before
    its time however often the manager polls (no busy loop); once the cause is gone, the model runs."""
    import random

    ref = publish(world, registry, world["a"], repo="car/causes")
    relay = Relay(registry.host, cut_after=0)  # the registry's answers never arrive
    via = oci.Reference(relay.host, ref.repository, None, ref.digest)
    now = [1000.0]
    p = params(world, tmp_path, retry_min_s=10.0, retry_max_s=600.0)
    m = ModelManager(p, loader=Loads(), clock=lambda: now[0], rng=random.Random(7))
    waits = []
    try:
        set_desired(m, str(via))
        for _ in range(9):
            m.check_once()
            assert "will retry in" in m.error and m.current is None and m.state == "none"
            tries = relay.connections
            for _ in range(20):  # polled again and again before its time: not tried
                m.check_once()
            assert relay.connections == tries
            waits.append(m.retry.next_at - now[0])
            now[0] = m.retry.next_at
        relay.reset(cut_after=None)  # back up: the next try takes it
        m.check_once()
        assert m.swap_if_ready() and current_model(m).ref == via and m.error == ""
    finally:
        relay.close()
    bases = [min(600.0, 10.0 * 2**i) for i in range(9)]
    assert all(b / 2 <= w <= b for w, b in zip(waits, bases, strict=True)), waits
    assert max(waits) <= 600.0 and m.retry.failures == 0
    # a digest not pushed yet, a signature by another key: tried again too (the cause may go away)
    for bad in (
        oci.Reference(registry.host, "car/causes", None, "sha256:" + "1" * 64),
        publish(world, registry, with_serial(world["b"], 2), repo="car/causes", key="intruder"),
    ):
        set_desired(m, str(bad))
        m.check_once()
        assert "will retry in" in m.error and bad.digest not in m.refused and current_model(m).ref == via
        now[0] = m.retry.next_at
        m.check_once()
        assert m.retry.failures == 2
    m.shutdown()


def test_a_cache_written_by_an_older_pitlane_still_starts_the_car_offline(registry, world, tmp_path):
    """Older caches kept digest -> signature manifest in state.json, not as links: the car adopts them."""

    ref = publish(world, registry, world["a"], repo="car/older")
    p = params(world, tmp_path)
    m = ModelManager(p, loader=Loads())
    set_desired(m, str(ref))
    m.check_once()
    assert m.swap_if_ready()
    sig = current_model(m).signature
    m.shutdown()
    state_file = p.cache_dir / "state.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps(state | {"signatures": {ref.digest: sig}}))
    for link in m.cache.links.glob("*.sig"):  # the attestation's link stays: the car requires one
        link.unlink()
    offline = dataclasses.replace(p, ref_file=None, ref_env="PITLANE_TEST_NO_SUCH_VAR")
    restarted = ModelManager(offline, loader=Loads())
    assert restarted.current is not None and current_model(restarted).ref == ref, restarted.error
    restarted.shutdown()


def test_rolls_back_a_model_that_fails_while_driving(registry, models, world, tmp_path):
    ref_a = publish(world, registry, world["a"], repo="car/rollback")
    ref_b = publish(world, registry, world["b"], repo="car/rollback")
    m = ModelManager(params(world, tmp_path), loader=Loads())
    for ref in (ref_a, ref_b):
        set_desired(m, str(ref))
        m.check_once()
        assert m.swap_if_ready()
    frame = np.zeros((120, 160, 3), np.uint8)
    assert m.pilot.pilot is not None
    m.pilot.pilot.run = lambda image: (float("nan"), float("nan"))  # B starts failing on the road
    for _ in range(m.params.max_loop_failures):
        m.pilot.run(frame)
    assert m.swap_if_ready()
    assert current_model(m).ref == ref_a and m.state == "rolled back" and "failed 3 times" in m.error
    m.check_once()  # B is not tried again
    assert current_model(m).ref == ref_a
    m._write_state()
    m.shutdown()
    restarted = ModelManager(dataclasses.replace(m.params, ref_file=None), loader=Loads())
    assert current_model(restarted).ref == ref_a  # a restart after the rollback starts from the good model
    restarted.shutdown()


@pytest.mark.parametrize("profile", ["twin", "pi"])
def test_the_car_app_pulls_its_model_by_digest_and_drives(
    registry, world, car_config, twin, tmp_path, monkeypatch, profile
):
    """build_car with MODEL_MANAGER (both profiles): no --model; the desired digest comes from the environment."""
    from pitlane.car.app import build_car

    ref_a = publish(world, registry, world["a"], repo=f"car/app-{profile}")
    monkeypatch.setenv("PITLANE_TEST_MODEL_REF", str(ref_a))
    extra = {"CAMERA_TYPE": "MOCK", "DRIVE_TRAIN_TYPE": "MOCK"} if profile == "pi" else {}
    cfg = car_config(
        twin.port,
        PITLANE_PROFILE=profile,
        MODEL_MANAGER=True,
        MODEL_REF_ENV="PITLANE_TEST_MODEL_REF",
        MODEL_PUBLIC_KEY=str(world["pub"]),
        MODEL_CACHE_DIR=str(tmp_path / "cache"),
        MODEL_POLL_S=0.2,
        MODEL_LATENCY_BUDGET_MS=200.0,
        WEB_INIT_MODE="local",
        **extra,
    )
    car = build_car(cfg, None, record=False)
    # the first check runs before the loop starts: a reachable model drives from the first iteration
    assert car.model_manager is not None and car.model_manager.refusal() is None
    runner = threading.Thread(target=car.start, kwargs=dict(max_loop_count=10**6))
    runner.start()
    try:
        mem = car.vehicle.mem
        assert wait_until(lambda: mem.get(["model/digest"])[0] == ref_a.digest, 60), (
            car.model_manager.status()
        )
        assert mem.get(["model/serial", "model/state", "model/error"]) == [1, "running", ""]
        assert wait_until(lambda: mem.get(["user/mode"])[0] == "local", 10)
        assert wait_until(lambda: isinstance(mem.get(["pilot/angle"])[0], float), 10)
        assert np.isfinite(mem.get(["pilot/angle", "pilot/throttle"])).all()
    finally:
        car.vehicle.on = False
        runner.join(10)
    with pytest.raises(Exception, match="drop --model"):
        build_car(cfg, "some.tflite", record=False)


def test_the_probe_pulls_verifies_and_health_checks_a_bundle_as_the_car_image_does(registry, world):
    """pitlane.car.selfcheck's bundle path (what the car image's smoke run executes under qemu)."""
    from pitlane.car.selfcheck import pull_verified

    ref = publish(world, registry, world["a"], repo="probe/pilot")
    got, pilot = pull_verified(str(ref), str(world["pub"]))
    assert got["verified"] == str(ref) and got["serial"] == 1 and got["canary_error"] <= 0.05
    assert got["gate"] == "pass" and Path(got["path"]).read_bytes()[4:8] == b"TFL3"
    assert np.isfinite(pilot.run(np.zeros((120, 160, 3), np.uint8))).all()
    unsigned = bundle.push(world["client"], world["b"], oci.Reference(registry.host, "probe/unsigned"), ())
    with pytest.raises(SignatureError, match="is not signed"):
        pull_verified(str(unsigned), str(world["pub"]))
