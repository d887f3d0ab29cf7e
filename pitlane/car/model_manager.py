"""The model manager: the car pulls a signed model bundle by digest, checks it, and hot-swaps it.

The deployment says which model the car should run: `REGISTRY/REPO@sha256:...` (never a tag) in a mounted
file (a ConfigMap) or an environment variable. The key it must be signed with ships in the car's image
(`MODEL_PUBLIC_KEY`, pitlane/car/trust/model.pub), never in the deployment. A worker thread polls the
reference; for a new digest it

  1. fetches the bundle with `pitlane.artifacts.fetch.fetch_verified` (the one verified fetch: manifest by
     digest, cosign signature before anything else, gate attestation, config, .tflite and canary frames,
     each checked against its digest and bounded by its size, streamed into a content-addressed cache),
     the whole pull within `MODEL_PULL_DEADLINE_S` of wall clock however slowly the registry sends;
  2. requires what the release chain vouches for (`pitlane.artifacts.trust.check_release`): the release
     serial in the signature (the bundle config's must match it), and a gate attestation signed by the same
     key with verdict pass for exactly this bundle, model and serial;
  3. applies the serial rules (`pitlane.car.model_rules`): not older than the highest serial it accepted
     (kept in `state.json` on a persistent volume) unless the operator pins exactly that one
     (MODEL_PIN_SERIAL), never below the minimum its image ships, at most MODEL_MAX_SERIAL_JUMP above;
  4. hands the verified bytes themselves to the interpreter (no second read of a file: nothing can swap
     them in between) and health-checks the candidate: it loads, its outputs on the canary frames are
     finite, of the right shape and close to the ones recorded at packing time, and inference fits the
     latency budget.

The vehicle loop swaps the checked pilot in at the start of an iteration (`run_threaded`: one reference
assignment), so the loop never stops. Any refusal leaves the last good model driving and is tried again
after a backoff (10 s doubling to 10 min, with jitter): an unreachable registry, a trickle cut by the
deadline, a signature or attestation that appears later, a bad blob, a failed check; only a model that
failed in the loop (rolled back to the previous one) waits for the deployment to name another. At start the
car runs the model its cache says was last accepted (verified again, offline).

State goes to the log, a status file and vehicle memory (`model/digest`, `model/serial`, `model/state`,
`model/error`, `model/freshness`). Freshness says whether the running model is the desired one (current,
updating, stale, frozen: `pitlane.car.model_rules`); it is logged once per change.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pitlane.artifacts import bundle, oci, signing
from pitlane.artifacts.cache import BlobCache
from pitlane.artifacts.fetch import fetch_verified
from pitlane.artifacts.trust import check_release
from pitlane.car import model_rules
from pitlane.car.model_params import ManagerParams
from pitlane.errors import BadInput, Refused, Unavailable, UserError
from pitlane.gate_report import GateReport
from pitlane.pilots.model import ModelPilot

logger = logging.getLogger(__name__)

NONE, RUNNING, CHECKING, REFUSED, ROLLED_BACK = "none", "running", "checking", "refused", "rolled back"
MEMORY_KEYS = ["model/digest", "model/serial", "model/state", "model/error", "model/freshness"]
STATE_FILE = "state.json"
CONTACT_EVERY_S = 60.0  # [s] with nothing to pull, how often the car checks the registry still answers


@dataclass
class Loaded:
    """A verified, health-checked model, ready to drive."""

    ref: oci.Reference  # with its digest
    serial: int  # the release serial its signature carries
    pilot: Any
    path: Path  # the cache file holding the verified .tflite (the interpreter got its bytes, not this path)
    signature: str  # digest of the signature manifest that verified it (kept in the cache)
    canary_error: float  # largest |output - recorded| on the canary frames
    latency_ms: float  # median inference time on the canary frames
    gate: GateReport | None = None  # its verified gate attestation (verdict pass, for exactly this model)
    config: dict[str, Any] | None = None  # the verified bundle config (the fleet part reads frame_stats)


class ManagedPilot:
    """The pilot part the vehicle runs: the manager's current model, counting failed inferences."""

    def __init__(self) -> None:
        self.pilot: Any | None = None
        self.failures = 0  # consecutive exceptions or non-finite outputs

    def run(self, image):
        pilot = self.pilot
        if pilot is None:
            return math.nan, math.nan  # the autopilot guard keeps the car in user mode meanwhile
        try:
            angle, throttle = pilot.run(image)
        except Exception:
            self.failures += 1
            raise
        self.failures = 0 if math.isfinite(angle) and math.isfinite(throttle) else self.failures + 1
        return angle, throttle

    def shutdown(self) -> None:
        pass  # the manager owns the pilots


def read_desired(params: ManagerParams) -> str | None:
    """The desired reference text: the first non-comment line of the mounted file, else the variable."""
    if params.ref_file is not None and params.ref_file.is_file():
        try:
            for line in params.ref_file.read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    return line.strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read desired model file {params.ref_file}: {exc}") from None
        return None
    value = os.environ.get(params.ref_env, "").strip()
    return value or None


def parse_desired(text: str) -> oci.Reference:
    ref = oci.Reference.parse(text)
    if not ref.pinned:
        raise BadInput(
            f"desired model {text!r} is a tag; the car runs only REGISTRY/REPO@sha256:... references"
        )
    return ref


def health_check(
    pilot, frames: np.ndarray, recorded: np.ndarray, params: ManagerParams
) -> tuple[float, float]:
    """(largest canary error, median latency [ms]) or Refused with the reason (pure but for the timing)."""
    outputs, times = [], []
    for frame in frames:
        time.sleep(0.005)  # [s] let the vehicle loop's thread in between (the check runs beside the loop)
        t0 = time.perf_counter()
        out = pilot.run(frame)
        times.append(time.perf_counter() - t0)
        outputs.append(np.asarray(out, dtype=np.float64).ravel())
    if any(o.shape != (2,) for o in outputs):
        raise Refused(f"the model's outputs have shape {outputs[0].shape}, not (angle, throttle)")
    got = np.stack(outputs)
    if not np.isfinite(got).all():
        raise Refused("the model gives non-finite outputs (NaN or inf) on the canary frames")
    error = float(np.max(np.abs(got - recorded)))
    if error > params.canary_tolerance:
        raise Refused(
            f"the model's outputs on the canary frames differ from the recorded ones by up to {error:.3f} "
            f"(tolerance {params.canary_tolerance})"
        )
    latency_ms = float(np.median(times) * 1000.0)
    if latency_ms > params.latency_budget_ms:
        raise Refused(
            f"inference takes {latency_ms:.1f} ms per frame, over the {params.latency_budget_ms} ms budget"
        )
    return error, latency_ms


class ModelManager:
    """A donkeycar part (threaded): `update()` polls and prepares; `run_threaded()` swaps and reports."""

    def __init__(
        self,
        params: ManagerParams,
        *,
        loader: Callable[[bytes, Path], Any] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        """`loader(data, name)`: a pilot from the verified .tflite bytes (`name` only names them)."""
        self.params = params
        self.key = signing.load_public_key(params.public_key)
        self.cache = BlobCache(params.cache_dir)
        self.status_file = params.status_file or params.cache_dir / "status.json"
        self.loader = loader or self._load_model_pilot
        self.clock = clock
        self.pilot = ManagedPilot()
        self.current: Loaded | None = None
        self.previous: Loaded | None = None  # the last good model before the current one
        self.state = NONE
        self.error = ""  # why the desired model is not running now ("" when it is)
        self.last_error = ""  # the most recent refusal, kept after the problem went away
        self.last_check: float | None = None
        self.desired: str | None = None
        self.refused: dict[str, str] = {}  # digest -> why: failed in the loop, rolled back (not retried)
        self.retry = model_rules.Retry(params.retry_min_s, params.retry_max_s, rng)
        self.freshness = model_rules.Freshness(params.stale_s, clock())
        self.freshness_state: str | None = None  # as last judged (logged once per change)
        self._next_contact = 0.0  # [s] clock time the registry may next be asked whether it answers
        self.swaps: list[dict[str, Any]] = []
        self._pending: Loaded | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._dirty = True
        self._poll_requested = False
        self._state_dirty = False  # _disk changed in the loop thread; the worker writes it
        self._logged_error = ""
        self.on = True
        self._clients: dict[str, oci.Client] = {}
        self._disk = self._read_state()
        self.start_from_cache()

    # --- persistent state ------------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.params.cache_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self) -> None:
        oci.write_atomic(self.params.cache_dir / STATE_FILE, json.dumps(self._disk, indent=2).encode())

    @property
    def highest_serial(self) -> int:
        value = self._disk.get("highest_serial", 0)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def serial_rules(self) -> model_rules.SerialRules:
        p = self.params
        return model_rules.SerialRules(self.highest_serial, p.min_serial, p.pin_serial, p.max_serial_jump)

    def status(self) -> dict[str, Any]:
        cur, fresh = self.current, self.freshness
        return {
            "state": self.state,
            "reference": str(cur.ref) if cur else None,
            "digest": cur.ref.digest if cur else None,
            "serial": cur.serial if cur else None,
            "highest_serial": self.highest_serial,
            "min_serial": self.params.min_serial,
            "desired": self.desired,
            "last_check": self.last_check,
            "error": self.error,
            "last_error": self.last_error,
            "next_try": self.retry.next_at if self.retry.failures else None,
            "failures": self.retry.failures,
            "freshness": self.freshness_state,
            "differs_since": fresh.differs_since,
            "last_contact": fresh.last_contact,
            "stale_after_s": fresh.limit_s,
            "previous": str(self.previous.ref) if self.previous else None,
            "swaps": self.swaps[-10:],
        }

    @property
    def differs_since(self) -> float | None:
        """[s] clock time since when the desired model differs from the one running (None: it does not)."""
        return self.freshness.differs_since

    def write_status(self) -> None:
        oci.write_atomic(self.status_file, json.dumps(self.status(), indent=2).encode() + b"\n")
        self._dirty = False

    # --- preparing a candidate (worker thread) ----------------------------------------------------------
    def _client(self, ref: oci.Reference) -> oci.Client:
        if ref.registry not in self._clients:
            self._clients[ref.registry] = oci.Client(ref.registry, timeout_s=self.params.registry_timeout_s)
        return self._clients[ref.registry]

    def _load_model_pilot(self, data: bytes, name: Path):
        return ModelPilot(name, camera_shape=self.params.camera_shape, content=data)

    def prepare(
        self,
        ref: oci.Reference,
        client: oci.Client | None,
        *,
        accepted_before: bool = False,
        deadline_s: float | None = None,
    ) -> Loaded:
        """Fetch (from the cache, else the registry; without a client the cache alone), verify and
        health-check `ref`; a UserError says why not, by cause.

        `accepted_before`: the cache's own record of the model it last ran (exempt from the serial floor,
        which a rollback to it may have left behind). `deadline_s`: of the pull (default MODEL_PULL_DEADLINE_S)."""
        got = fetch_verified(
            ref,
            self.key,
            self.cache,
            client,
            titles=(bundle.TFLITE_NAME, bundle.CANARY_NAME),
            deadline_s=deadline_s or self.params.pull_deadline_s,
        )
        assert got.signature is not None and got.ref.digest is not None
        release = check_release(got)
        why = self.serial_rules().problem(release.serial, accepted_before=accepted_before)
        if why:
            raise Refused(f"{ref}: {why}")
        if bundle.CANARY_NAME not in got.layers:
            raise Refused(f"{ref} carries no canary frames; the car cannot health-check it")
        frames, recorded = bundle.read_canary(
            got.layers[bundle.CANARY_NAME], (got.config.get("canary") or {}).get("outputs")
        )
        path = self.cache.path(got.model_digest)
        pilot = self._load(ref, got.layers[bundle.TFLITE_NAME], path.with_suffix(".tflite"))
        try:
            error, latency = health_check(pilot, frames, recorded, self.params)
        except Refused as exc:
            _shutdown(pilot)
            raise Refused(f"{ref}: {exc}") from None
        except Exception as exc:
            _shutdown(pilot)
            raise Refused(
                f"{ref}: the model fails on the canary frames: {type(exc).__name__}: {exc}"
            ) from None
        return Loaded(
            ref, release.serial, pilot, path, got.signature, error, latency, release.gate, got.config
        )

    def _load(self, ref: oci.Reference, data: bytes, name: Path):
        try:
            return self.loader(data, name)
        except UserError as exc:
            raise Refused(f"{ref}: the model does not load: {exc}") from None
        except Exception as exc:  # a broken model can raise anything inside the runtime
            raise Refused(f"{ref}: the model does not load: {type(exc).__name__}: {exc}") from None

    def _accept(self, loaded: Loaded) -> None:
        """Record an accepted model in the persistent state: the car starts from it next time, and its
        serial raises the floor (a restart does not lower it: the state lives on a persistent volume)."""
        self._disk.update(
            current=str(loaded.ref),
            serial=loaded.serial,
            highest_serial=max(self.highest_serial, loaded.serial),
        )
        self._disk.pop("signatures", None)  # an older pitlane's record: the cache's links hold it now
        self._write_state()

    def _adopt_old_state(self) -> None:
        """A cache written by an older pitlane kept digest -> signature manifest in state.json; the
        cache's links keep it now (the signature is verified again when used, so a hint is enough)."""
        for digest, sig in (self._disk.get("signatures") or {}).items():
            if oci.is_digest(str(digest)) and oci.is_digest(str(sig)):
                tag = signing.suffix_tag(digest, "sig")
                if self.cache.link(tag) is None:
                    self.cache.set_link(tag, sig)

    def start_from_cache(self) -> None:
        """Run the model the cache last accepted, verified again without any network."""
        text = self._disk.get("current")
        if not isinstance(text, str):
            return
        self._adopt_old_state()
        try:
            loaded = self.prepare(parse_desired(text), None, accepted_before=True)
        except UserError as exc:
            self._set_error(f"cached model refused: {exc}")
            return
        self._install(loaded)
        logger.info("model manager: started from cache with %s (serial %d)", loaded.ref, loaded.serial)

    def check_once(self, deadline_s: float | None = None) -> None:
        """One poll: read the desired reference and, when it names another digest that is due for a try,
        prepare it (the pull within `deadline_s`, default MODEL_PULL_DEADLINE_S); then judge freshness."""
        now = self.clock()
        self.last_check = now
        self._dirty = True
        ref: oci.Reference | None = None
        try:
            text = read_desired(self.params)
            self.desired = text
            ref = parse_desired(text) if text is not None else None
        except UserError as exc:
            self._set_error(str(exc))
        if ref is not None:
            self._try(ref, now, deadline_s)
        desired = ref.digest if ref is not None else self.desired
        self.freshness.observe(self.current.ref.digest if self.current else None, desired, now)
        self._judge(self.clock())

    def _try(self, ref: oci.Reference, now: float, deadline_s: float | None) -> None:
        assert ref.digest is not None
        running = self.current.ref.digest if self.current else None
        if ref.digest == running or (self._pending and self._pending.ref.digest == ref.digest):
            if self.state == REFUSED:  # the deployment went back to what runs: nothing is wrong any more
                self.state, self.error = RUNNING, ""
            self._keep_in_touch(ref, now)
            return
        if ref.digest in self.refused or not self.retry.due(ref.digest, now):
            return
        self.state = CHECKING
        logger.info("model manager: checking %s", ref)
        try:
            loaded = self.prepare(ref, self._client(ref), deadline_s=deadline_s)
        except UserError as exc:
            if not isinstance(exc, Unavailable):
                self.freshness.contact(now)  # the registry answered; what it gave was refused
            wait = self.retry.failed(ref.digest, self.clock())
            why = str(exc) if str(ref) in str(exc) else f"{ref}: {exc}"
            self._set_error(f"{why} (will retry in {wait:.0f} s)", base=why)
            return
        self.freshness.contact(now)
        self.retry.succeeded(ref.digest)
        self._accept(loaded)
        with self._lock:
            self._pending = loaded
        logger.info(
            "model manager: %s (serial %d) passed: canary error %.4f, %.1f ms/frame; swapping in",
            ref,
            loaded.serial,
            loaded.canary_error,
            loaded.latency_ms,
        )

    def _keep_in_touch(self, ref: oci.Reference, now: float) -> None:
        """With nothing to pull, ask the registry now and then whether it still answers (freshness)."""
        if now < self._next_contact:
            return
        self._next_contact = now + CONTACT_EVERY_S
        client = self._client(ref)
        try:
            with client.deadline(self.params.registry_timeout_s):
                client.ping()
        except UserError as exc:
            logger.debug("model manager: registry %s does not answer: %s", ref.registry, exc)
            return
        self.freshness.contact(now)

    def _judge(self, now: float) -> None:
        """Freshness of the running model; logged (and reported) once per change."""
        state = self.freshness.judge(now)
        if state == self.freshness_state:
            return
        before, self.freshness_state, self._dirty = self.freshness_state, state, True
        fresh = self.freshness
        if state == model_rules.STALE:
            assert fresh.differs_since is not None
            logger.warning(
                "model manager: stale: the desired model %s has not run for %.0f s (MODEL_STALE_S %g); "
                "the car drives %s; %s",
                self.desired,
                now - fresh.differs_since,
                fresh.limit_s,
                self.current.ref if self.current else "by hand only",
                self.error or self.last_error or "no error",
            )
        elif state == model_rules.FROZEN:
            heard = fresh.last_contact if fresh.last_contact is not None else fresh.started
            logger.warning(
                "model manager: frozen: no registry has answered for %.0f s (MODEL_STALE_S %g); the car "
                "keeps %s and would not get a new release either",
                now - heard,
                fresh.limit_s,
                self.current.ref if self.current else "no model",
            )
        elif before is not None:
            logger.info("model manager: freshness %s (was %s)", state, before)

    def _set_error(self, message: str, base: str | None = None) -> None:
        """Record a refusal; logged as an error when it is news, else quietly (a retry's same refusal)."""
        self.error = self.last_error = message
        self.state = REFUSED if self.current else NONE
        self._dirty = True
        news = (base or message) != self._logged_error
        self._logged_error = base or message
        (logger.error if news else logger.info)(
            "model manager: %s%s", message, "; the last good model keeps driving" if self.current else ""
        )

    # --- the vehicle loop side ----------------------------------------------------------------------------
    def _install(self, loaded: Loaded) -> None:
        old = self.current
        self.pilot.pilot, self.pilot.failures = loaded.pilot, 0
        self.previous, self.current = (old or self.previous), loaded
        self.state, self.error, self._dirty = RUNNING, "", True
        now = self.clock()
        self.swaps.append({"at": now, "to": str(loaded.ref), "serial": loaded.serial})
        self.freshness.observe(loaded.ref.digest, self.freshness.desired, now)
        self._judge(now)

    def swap_if_ready(self) -> bool:
        """Install a prepared model (between two loop iterations) or roll back a failing one; True if swapped."""
        if (
            self.current is not None
            and self.pilot.failures >= self.params.max_loop_failures
            and self.previous
        ):
            bad, good = self.current, self.previous
            assert bad.ref.digest is not None
            self.refused[bad.ref.digest] = (
                f"{bad.ref} failed {self.pilot.failures} times in a row while driving"
            )
            self.pilot.pilot, self.pilot.failures = good.pilot, 0
            self.current, self.previous = good, None
            self.state, self.error, self._dirty = ROLLED_BACK, self.refused[bad.ref.digest], True
            self.last_error = self.error
            self._disk.update(current=str(good.ref), serial=good.serial)  # a restart starts from the good one
            self._state_dirty = True
            self.freshness.observe(good.ref.digest, self.freshness.desired, self.clock())
            logger.error("model manager: %s; rolled back to %s", self.error, good.ref)
            return True
        if self._pending is None:
            return False
        with self._lock:
            loaded, self._pending = self._pending, None
        if loaded is None:
            return False
        self._install(loaded)
        return True

    def outputs(self) -> tuple[str, int, str, str, str]:
        cur = self.current
        digest = cur.ref.digest or "" if cur else ""
        return (digest, cur.serial if cur else 0, self.state, self.error, self.freshness_state or "")

    def run_threaded(self):
        self.swap_if_ready()
        return self.outputs()

    def run(self):
        """Not threaded (tests, a single-threaded loop): poll when due, then swap and report."""
        if self.last_check is None or self.clock() - self.last_check >= self.params.poll_s:
            self.check_once()
        out = self.run_threaded()
        if self._dirty:
            self.write_status()
        return out

    def update(self) -> None:
        """The worker: poll every `poll_s`, keep the status file current, until `shutdown`."""
        next_poll = 0.0
        while self.on:
            now = time.monotonic()
            if now >= next_poll or self._poll_requested:
                self._poll_requested = False
                try:
                    self.check_once()
                except Exception:  # the worker must outlive any surprise; the loop keeps driving
                    logger.exception("model manager: unexpected failure while checking")
                next_poll = now + self.params.poll_s
            if self._state_dirty:
                self._state_dirty = False
                self._write_state()
            if self._dirty:
                try:
                    self.write_status()
                except OSError as exc:
                    logger.error("model manager: cannot write status file %s: %s", self.status_file, exc)
            self._wake.wait(0.2)
            self._wake.clear()

    def poll_now(self) -> None:
        """Ask the worker to check the desired reference right away (an operator, or a test)."""
        self._poll_requested = True
        self._wake.set()

    def refusal(self) -> str | None:
        """Why the autopilot cannot run now (no verified model yet), or None."""
        if self.pilot.pilot is not None:
            return None
        return f"no verified model yet (model manager: {self.error or self.state})"

    def shutdown(self) -> None:
        self.on = False
        self._wake.set()
        try:
            self.write_status()  # the last word: what ran when the car stopped
        except OSError as exc:
            logger.error("model manager: cannot write status file %s: %s", self.status_file, exc)
        for loaded in (self.current, self.previous, self._pending):
            if loaded is not None:
                _shutdown(loaded.pilot)


def _shutdown(pilot) -> None:
    fn = getattr(pilot, "shutdown", None)
    if fn:
        try:
            fn()
        except Exception:
            logger.debug("pilot shutdown failed", exc_info=True)
