"""The car's pulls under attack (docs/threat-model.md, P1 and P3-P7): each test performs the attack through
the real registry (or a hostile one in front of it) and a real model manager, and sees it refused or
detected while the last good model keeps driving. The hostile-registry test drives the twin with the car
app (`build_car`, twin profile) and reads its loop rate from the car's own telemetry (GET /status loop_hz).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import statistics
import threading
import time

import numpy as np
import pytest
from console_clients import LoopWatch, rss_bytes
from helpers import wait_until
from hostile_registry import HostileRegistry
from model_support import release_bundle, release_key, with_serial

from pitlane.artifacts import bundle, oci, signing
from pitlane.artifacts.relay import Relay
from pitlane.car.model_manager import Loaded, ManagerParams, ModelManager
from pitlane.car.model_params import shipped_min_serial

pytestmark = pytest.mark.slow  # real TFLite models, a registry, the twin and a 20 Hz loop

TOKEN = "test-console-token-0123456789"
MIN_LOOP_HZ, MEDIAN_LOOP_HZ = 10.0, 15.0  # [Hz] every sample / their median (as the console's attack tests)
DEADLINE_S = 4.0  # [s] MODEL_PULL_DEADLINE_S of the car under attack


@pytest.fixture(scope="module")
def world(registry, models, tmp_path_factory):
    """The release key, and bundles of three different models packed once: a (serial 1), b, c."""
    key, pub = release_key(tmp_path_factory.mktemp("attacks"))
    packed = {name: bundle.pack(models[name], gate_report=None, serial=1) for name in ("a", "b", "c")}
    return dict(key=key, pub=pub, client=oci.Client(registry.host), registry=registry, **packed)


def publish(world, b: bundle.Bundle, repo: str, signed_serial: int | None = None) -> oci.Reference:
    """Push `b` and release it as the pipeline does (its serial signed: the config's unless told)."""
    repo_ref = oci.Reference(world["registry"].host, repo)
    return release_bundle(world["client"], b, repo_ref, world["key"], serial=signed_serial)


def params(world, state_dir, **kw) -> ManagerParams:
    base = ManagerParams(
        public_key=world["pub"],
        cache_dir=state_dir,
        ref_file=state_dir.parent / "model-ref",
        poll_s=3600.0,
        latency_budget_ms=200.0,
        retry_min_s=0.01,
        retry_max_s=0.02,
    )
    return dataclasses.replace(base, **kw)


def desire(manager: ModelManager, ref: oci.Reference | str) -> None:
    assert manager.params.ref_file is not None
    manager.params.ref_file.write_text(f"{ref}\n")


def take(manager: ModelManager, ref: oci.Reference) -> Loaded:
    """Name `ref` and check once; the model the manager runs then (the test fails if it is not `ref`)."""
    desire(manager, ref)
    manager.check_once()
    manager.swap_if_ready()
    assert manager.current is not None and manager.current.ref == ref, manager.error
    return manager.current


def test_a_serial_rollback_across_a_pod_restart_is_refused(world, tmp_path):
    """P1: the floor lives in state.json on the persistent volume (PITLANE_STATE_DIR); a re-created pod is a
    new manager over the same folder. The image's minimum serial holds even on a fresh volume."""
    old = publish(world, with_serial(world["a"], 1), "attack/rollback")
    new = publish(world, with_serial(world["b"], 2), "attack/rollback")
    p = params(world, tmp_path / "state")
    first = ModelManager(p)
    take(first, new)
    first.shutdown()
    assert json.loads((p.cache_dir / "state.json").read_text())["highest_serial"] == 2
    # the pod is re-created and the ConfigMap is rolled back to the old (validly signed) release
    restarted = ModelManager(p)
    assert restarted.current is not None and restarted.current.ref == new  # started from its cache
    desire(restarted, old)
    restarted.check_once()
    assert "older than serial 2 this car already accepted" in restarted.error, restarted.error
    assert "MODEL_PIN_SERIAL = 1" in restarted.error and restarted.current.ref == new
    restarted.shutdown()
    # a fresh volume (a new car, or a wiped one): the minimum the image ships refuses it, pin or no pin
    assert ManagerParams(public_key=world["pub"], cache_dir=tmp_path).min_serial == shipped_min_serial() == 0
    fresh = ModelManager(params(world, tmp_path / "fresh", min_serial=2, pin_serial=1))
    desire(fresh, old)
    fresh.check_once()
    assert "below 2, the lowest this car image accepts" in fresh.error and fresh.current is None
    fresh.shutdown()


def test_a_self_chosen_huge_serial_cannot_lock_the_fleet_out(world, tmp_path):
    """P1: the serial comes from the signature (the pipeline assigns it): a pusher's config serial of 10^9
    is refused; a huge signed one (a key used outside the pipeline) too. Neither moves the floor: the next
    release is taken."""
    m = ModelManager(params(world, tmp_path / "state"))
    take(m, publish(world, with_serial(world["a"], 2), "attack/huge"))
    pushed = publish(world, with_serial(world["b"], 10**9), "attack/huge", signed_serial=3)
    desire(m, pushed)
    m.check_once()
    assert "config says release serial 1000000000 but its signature 3" in m.error, m.error
    jumped = publish(world, with_serial(world["b"], 5000), "attack/huge")
    desire(m, jumped)
    m.check_once()
    assert "jumps 4998 above this car's floor 2" in m.error and m.highest_serial == 2, m.error
    assert take(m, publish(world, with_serial(world["c"], 3), "attack/huge")).serial == 3
    assert m.highest_serial == 3
    m.shutdown()


def test_bytes_swapped_on_disk_after_verification_never_reach_the_interpreter(world, models, tmp_path):
    """P6: an attacker who can write the cache swaps the verified .tflite for another model at the last
    moment, as the loader is called: the interpreter gets the verified bytes (no second read); the swapped
    file is caught at the next start (every read re-hashed) and fetched again."""
    ref = publish(world, world["a"], "attack/swap")
    digest = oci.sha256_digest(models["a"].read_bytes())
    m = ModelManager(params(world, tmp_path / "state"))
    real_loader = m.loader

    def swap_then_load(data: bytes, name):
        m.cache.path(digest).write_bytes(models["far"].read_bytes())
        return real_loader(data, name)

    m.loader = swap_then_load
    loaded = take(m, ref)
    assert loaded.pilot.digest == digest and loaded.canary_error <= 0.05  # model a, not "far"
    m.shutdown()
    restarted = ModelManager(dataclasses.replace(m.params, ref_file=None, ref_env="PITLANE_TEST_NO_SUCH_VAR"))
    assert restarted.current is None and "corrupt" in restarted.error


def test_a_stale_or_a_frozen_model_is_reported_once_per_change(world, tmp_path, caplog):
    """P7: the registry goes silent while nothing changes (frozen), then the deployment names a model the
    car cannot fetch (stale): each is reported in the status, vehicle memory and one log line, after
    MODEL_STALE_S, and cleared once it is over."""
    ref_a = publish(world, world["a"], "attack/fresh")
    ref_b = publish(world, with_serial(world["b"], 2), "attack/fresh")
    relay = Relay(world["registry"].host)
    via = {
        k: oci.Reference(relay.host, r.repository, None, r.digest) for k, r in (("a", ref_a), ("b", ref_b))
    }
    now = [1000.0]
    m = ModelManager(
        params(world, tmp_path / "state", stale_s=100.0), clock=lambda: now[0], rng=random.Random(1)
    )
    caplog.set_level(logging.INFO, "pitlane.car.model_manager")

    def poll(seconds: float) -> list[str]:
        seen = []
        for _ in range(int(seconds // 10)):
            now[0] += 10.0
            m.check_once()
            seen.append(m.status()["freshness"])
        return seen

    def said(word: str) -> int:
        return sum(f"model manager: {word}" in r.getMessage() for r in caplog.records)

    try:
        take(m, via["a"])
        assert m.status()["freshness"] == "current" and m.outputs()[4] == "current"
        relay.reset(cut_after=0)  # the registry answers nothing any more
        seen = poll(200)
        assert seen[0] == "current" and seen[-1] == "frozen" and m.outputs()[4] == "frozen"
        assert said("frozen:") == 1  # once per change, not once per poll
        relay.reset(cut_after=None)
        poll(70)  # the next look at the registry finds it answering
        assert m.status()["freshness"] == "current" and said("freshness current (was frozen)") == 1
        relay.reset(cut_after=0)
        desire(m, via["b"])  # a new release the car cannot fetch
        seen = poll(200)
        assert "updating" in seen and seen[-1] == "stale" and said("stale:") == 1
        m.write_status()
        status = json.loads(m.status_file.read_text())
        assert status["freshness"] == "stale" and status["differs_since"] is not None
        assert status["desired"] == str(via["b"]) and status["reference"] == str(via["a"])
        relay.reset(cut_after=None)
        now[0] = m.retry.next_at
        m.check_once()
        m.swap_if_ready()
        assert m.current is not None and m.current.ref == via["b"] and m.status()["freshness"] == "current"
    finally:
        relay.close()
        m.shutdown()


# --- a hostile registry while the car drives ----------------------------------------------------------------


def test_an_endless_blob_a_trickle_and_a_hidden_signature_leave_the_car_driving_at_20_hz(
    world, models, car_config, twin, tmp_path
):
    """P3, P4, P5 on a car that drives the twin on model a: a registry that streams an endless .tflite is
    cut at the blob's signed size, one that trickles a byte a second is cut at the pull's deadline, one that
    hides a signature is tried again after the backoff and the model is taken once it shows. The loop keeps
    20 Hz throughout, and the last good model drives."""
    from pitlane.car.app import build_car

    ref_a = publish(world, world["a"], "attack/drive")
    hostile = HostileRegistry(world["registry"].host, trickle_s=1.0)
    refs = {
        name: oci.Reference(hostile.host, r.repository, None, r.digest)
        for name, r in (
            ("endless", publish(world, with_serial(world["b"], 2), "attack/drive")),
            ("trickle", publish(world, with_serial(world["c"], 3), "attack/drive")),
            ("hidden", publish(world, with_serial(world["a"], 4), "attack/drive")),
        )
    }
    hostile.attack(oci.sha256_digest(models["b"].read_bytes()), "endless")
    hostile.attack(oci.sha256_digest(models["c"].read_bytes()), "trickle")
    hidden_sig = signing.suffix_tag(str(refs["hidden"].digest), "sig")
    hostile.attack(hidden_sig, "hidden")
    ref_file = tmp_path / "model-ref"
    ref_file.write_text(f"{ref_a}\n")
    cfg = car_config(
        twin.port,
        WEB_CONSOLE_TOKEN=TOKEN,
        WEB_INIT_MODE="local",
        MODEL_MANAGER=True,
        MODEL_REF_FILE=str(ref_file),
        MODEL_PUBLIC_KEY=str(world["pub"]),
        MODEL_CACHE_DIR=str(tmp_path / "state"),
        MODEL_POLL_S=0.2,
        MODEL_LATENCY_BUDGET_MS=200.0,
        MODEL_PULL_DEADLINE_S=DEADLINE_S,
        MODEL_RETRY_MIN_S=1.0,
        MODEL_RETRY_MAX_S=4.0,
    )
    car = build_car(cfg, None, record=False)
    manager = car.model_manager
    assert manager is not None and manager.current is not None and manager.current.ref == ref_a
    loop = threading.Thread(target=car.start, daemon=True)
    loop.start()
    figures: dict[str, float] = {}
    try:
        assert car.web.ready.wait(10)
        base = f"http://127.0.0.1:{car.web.bound_port}"
        assert wait_until(lambda: (car.web.telemetry.get("loop_hz") or 0) > MEDIAN_LOOP_HZ, 15)
        rss_before = rss_bytes()
        watch = LoopWatch(base, TOKEN)

        def attacked(name: str, words: str, timeout_s: float) -> float:
            """Name model `name`; seconds until the manager refuses it with `words` (a driving on)."""
            t0 = time.monotonic()
            ref_file.write_text(f"{refs[name]}\n")
            assert wait_until(lambda: words in manager.error, timeout_s), manager.status()
            assert manager.current is not None and manager.current.ref == ref_a
            return time.monotonic() - t0

        figures["endless_s"] = attacked("endless", f"more than the {len(models['b'].read_bytes())} bytes", 20)
        figures["trickle_s"] = attacked("trickle", f"within the pull's {DEADLINE_S:g} s deadline", 30)
        figures["hidden_s"] = attacked("hidden", "is not signed", 20)
        assert "will retry in" in manager.error
        hostile.lift(hidden_sig)  # the signature shows: taken after the backoff, no change of the reference
        t0 = time.monotonic()
        assert wait_until(lambda: car.vehicle.mem["model/digest"] == refs["hidden"].digest, 30), (
            manager.status()
        )
        figures["picked_up_s"] = time.monotonic() - t0
        time.sleep(1.0)
        assert loop.is_alive() and car.vehicle.on, "the drive loop died"
        samples = watch.stop()
        rss_after = rss_bytes()
    finally:
        car.vehicle.on = False
        loop.join(10)
        hostile.close()
    assert figures["trickle_s"] <= DEADLINE_S + 3.0, figures  # the pull ended within its deadline
    assert hostile.requests[hidden_sig] >= 2  # tried again, not skipped
    assert len(samples) >= 10 and min(samples) >= MIN_LOOP_HZ, samples
    assert statistics.median(samples) >= MEDIAN_LOOP_HZ, samples
    assert rss_after - rss_before < 64 << 20  # the endless blob went no further than its signed size
    print(
        f"\nhostile registry: endless refused in {figures['endless_s']:.1f} s, trickle cut in "
        f"{figures['trickle_s']:.1f} s (deadline {DEADLINE_S:g} s), hidden .sig refused in "
        f"{figures['hidden_s']:.1f} s and picked up {figures['picked_up_s']:.1f} s after it showed; "
        f"loop_hz min {min(samples)} median {statistics.median(samples)} over {len(samples)} samples; "
        f"RSS {rss_before >> 20} -> {rss_after >> 20} MiB; attack bytes sent {hostile.bytes_sent}"
    )
    assert np.isfinite(car.vehicle.mem["pilot/angle"])
