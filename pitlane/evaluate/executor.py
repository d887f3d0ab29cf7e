"""Where an evaluation's runs are driven: in this process, in a pool of worker processes, or on Ray.

Every run is independent (a pilot, a scene, the run's parameters -> an `Outcome`), so they fan out. An
executor takes the one pilot and the list of `Job`s and gives back their outcomes in the jobs' order; what
it returns is the same whichever executor drove (the same seeds give the same reports; only the measured
`wall_seconds` differ). A worker never receives a TensorFlow object: it gets the model by path and digest
(`PilotRef`), loads it once, refuses bytes with another digest, and runs TFLite and TensorFlow on one
thread, as the car does and as the serial executor does.

The process pool uses the 'forkserver' start method ('spawn' where there is none): TensorFlow's threads do
not survive a fork. Ray (`pitlane[ray]`) lives in `pitlane.evaluate.ray_pool`, imported only when asked for.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from pitlane.errors import Unavailable, UserError
from pitlane.evaluate.report import EvalParams
from pitlane.evaluate.run import Outcome, Pilot, run_one, scene_track
from pitlane.pilots.expert import ExpertParams, ExpertPilot

EXECUTORS: tuple[str, ...] = ("process", "ray", "serial")
DEFAULT_EXECUTOR = "process"
CGROUP = Path("/sys/fs/cgroup")


def default_workers(cgroup: Path = CGROUP) -> int:
    """The cores this process may use: its affinity mask (a container's CPU set), and no more than a
    container's CPU limit allows (a pod limited to 2 CPUs on a 16-core node drives 2 runs at once)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity mask on this OS
        cores = os.cpu_count() or 1
    quota = cpu_quota(cgroup)
    return max(1, min(cores, int(quota)) if quota is not None else cores)


def cpu_quota(cgroup: Path = CGROUP) -> float | None:
    """The CPUs the cgroup's quota allows (cgroup v2 cpu.max, or v1 cfs_quota_us), None when unlimited."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" or int(period) <= 0 else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


@dataclass(frozen=True)
class Job:
    """One run to drive: the scene, the run's parameters, and who drives it (the model, or the expert for
    the comparison runs of `--vs-expert`)."""

    scene: str
    params: EvalParams
    expert: bool = False


@dataclass(frozen=True)
class PilotRef:
    """A pilot as a worker makes it again: a model by its file and the digest of the bytes loaded here (the
    worker refuses other bytes), or the expert. Never the loaded model itself."""

    kind: str  # "model" | "expert"
    path: str = ""  # the model file, absolute
    sha256: str = ""  # hex digest of the model's bytes as loaded here
    model_type: str = ""  # donkeycar model type (linear, categorical, ...)
    expert_params: ExpertParams | None = None

    @classmethod
    def of(cls, pilot: Pilot) -> PilotRef:
        from pitlane.pilots.model import ModelPilot  # no TensorFlow at import

        if isinstance(pilot, ExpertPilot):
            return cls("expert", expert_params=pilot.params)
        if isinstance(pilot, ModelPilot):
            return cls("model", str(pilot.path.resolve()), pilot.sha256, pilot.model_type)
        raise UserError(
            f"{type(pilot).__name__} drives only in this process: use the serial executor "
            "(--executor serial) or a ModelPilot"
        )

    def load(self, path: str | None = None) -> Pilot:
        """The pilot, loaded in this (worker) process on one thread; `path`: where the bytes are here."""
        if self.kind == "expert":
            return ExpertPilot(self.expert_params)
        from pitlane.pilots import model_check
        from pitlane.pilots.model import ModelPilot, configure_threads

        configure_threads(1)
        model_check.trust_probed(self.sha256)  # the parent probed these very bytes (same digest) already
        return ModelPilot(
            path or self.path, model_type=self.model_type, threads=1, expected_sha256=self.sha256
        )


def longest_first(jobs: Sequence[Job]) -> list[int]:
    """The jobs' indices, the longest drive first (laps x the track's length): whoever drives takes the next
    one when free, so the short runs fill in at the end instead of one long run driving alone."""

    def length_m(job: Job) -> float:
        try:
            return job.params.laps * scene_track(job.scene, job.params.seed).length_m
        except UserError:  # an unknown scene fails when driven, with its own error
            return 0.0

    lengths = [length_m(job) for job in jobs]
    return sorted(range(len(jobs)), key=lambda i: -lengths[i])  # stable: equal lengths keep their order


def drive_job(pilot: Pilot, job: Job) -> Outcome:
    """Drive one job with `pilot` (or a fresh expert for a comparison run)."""
    return run_one(ExpertPilot() if job.expert else pilot, job.scene, job.params)


class Executor(Protocol):
    """Drives jobs and returns their outcomes in the jobs' order."""

    def map(self, pilot: Pilot, jobs: Sequence[Job], progress: bool = False) -> list[Outcome]: ...


def progress_bar(total: int, show: bool):
    """A tqdm bar over runs (stderr), or None when not shown or there is only one run."""
    if not show or total < 2:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="run", desc="runs", leave=False)


class Serial:
    """Every run in this process, one after another, with the pilot as loaded here."""

    workers = 1

    def map(self, pilot: Pilot, jobs: Sequence[Job], progress: bool = False) -> list[Outcome]:
        bar = progress_bar(len(jobs), progress)
        try:
            out = []
            for job in jobs:
                out.append(drive_job(pilot, job))
                if bar is not None:
                    bar.update(1)
            return out
        finally:
            if bar is not None:
                bar.close()


# ------------------------------------------------------------------------------------------ process pool
_WORKER: dict[str, Any] = {}  # in a worker process: its pilot, or the error loading it raised


def _init_worker(ref: PilotRef, quiet: bool) -> None:
    """Worker start: load the pilot once. An error is kept and raised by the first job, so it reaches the
    parent as that job's exception (one line), not as a broken pool."""
    try:
        if quiet:
            from pitlane import quiet as quiet_imports

            quiet_imports.install()
            for name in ("donkeycar", "tensorflow", "absl"):
                logging.getLogger(name).setLevel(logging.WARNING)
        import cv2

        cv2.setNumThreads(1)  # one core per worker: the pool is the parallelism
        _WORKER["pilot"] = ref.load()
    except BaseException as exc:  # noqa: BLE001 - handed to the parent by the first job
        _WORKER["error"] = exc


def _worker_job(job: Job) -> Outcome:
    if "error" in _WORKER:
        raise _WORKER["error"]
    return drive_job(_WORKER["pilot"], job)


def _start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class ProcessPool:
    """`workers` runs at once (default: the cores): this process drives too, with the pilot it has loaded,
    and `workers - 1` worker processes each load the model once and join as soon as they have (a worker's
    start, mostly TensorFlow's import, is a few seconds: never a wait here, and never slower than serial).
    Each driver takes the next run when it is free, so a long run does not hold up a fixed share.
    `drive_here=False`: only worker processes drive (`workers` of them), this process waits."""

    def __init__(self, workers: int | None = None, *, drive_here: bool = True) -> None:
        if workers is not None and workers < 1:
            raise UserError(f"--workers must be >= 1, got {workers}")
        self.workers = workers or default_workers()
        self.drive_here = drive_here

    def map(self, pilot: Pilot, jobs: Sequence[Job], progress: bool = False) -> list[Outcome]:
        n = min(self.workers, len(jobs))
        if n <= 1 and self.drive_here:  # one run, or one worker: no process to start
            return Serial().map(pilot, jobs, progress)
        ref = PilotRef.of(pilot)
        quiet = logging.getLogger().getEffectiveLevel() > logging.DEBUG
        ctx = multiprocessing.get_context(_start_method())
        processes = n - 1 if self.drive_here else max(n, 1)
        pool = ProcessPoolExecutor(processes, mp_context=ctx, initializer=_init_worker, initargs=(ref, quiet))
        share = _Share([quiet_job(j) for j in jobs], progress_bar(len(jobs), progress))
        slots = [threading.Thread(target=share.feed, args=(pool,), daemon=True) for _ in range(processes)]
        try:
            for t in slots:
                t.start()
            while self.drive_here and (item := share.take()) is not None:  # this process drives too
                share.put(item[0], drive_job(pilot, item[1]))
            return share.result()  # once the workers' runs are in (a worker still starting is not waited for)
        finally:
            share.close()
            _stop(pool)


class _Share:
    """The runs left (the longest first), shared by this process and one thread per worker slot: each takes
    the next one when free. The first error stops the sharing and is raised here."""

    def __init__(self, jobs: list[Job], bar) -> None:
        self.todo = deque((i, jobs[i]) for i in longest_first(jobs))
        self.outcomes: list[Outcome | None] = [None] * len(jobs)
        self.error: BaseException | None = None
        self.bar = bar
        self.lock = threading.Condition()

    def take(self) -> tuple[int, Job] | None:
        with self.lock:
            if self.error is not None:
                raise _pool_error(self.error) from self.error
            return self.todo.popleft() if self.todo else None

    def put(self, i: int, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes[i] = outcome
            if self.bar is not None:
                self.bar.update(1)
            self.lock.notify_all()

    def feed(self, pool: ProcessPoolExecutor) -> None:
        """One worker slot: wait until a worker has loaded the pilot, then drive runs through it."""
        try:
            pool.submit(_worker_ready).result()
            while (item := self.take()) is not None:
                self.put(item[0], pool.submit(_worker_job, item[1]).result())
        except BaseException as exc:  # noqa: BLE001 - handed to the driving thread
            with self.lock:
                self.error = self.error or exc
                self.todo.clear()
                self.lock.notify_all()

    def result(self) -> list[Outcome]:
        """Every outcome, once the runs still driving elsewhere are in; or the first error."""
        with self.lock:
            while self.error is None and any(o is None for o in self.outcomes):
                self.lock.wait()
            if self.error is not None:
                raise _pool_error(self.error) from self.error
            return [o for o in self.outcomes if o is not None]

    def close(self) -> None:
        with self.lock:
            self.todo.clear()  # after an error here, no worker slot starts another run
        if self.bar is not None:
            self.bar.close()


def _worker_ready() -> bool:
    if "error" in _WORKER:
        raise _WORKER["error"]
    return True


def quiet_job(job: Job) -> Job:
    """No lap bar while runs are driven at once (several would interleave on one terminal): the bar is over
    runs."""
    return replace(job, params=replace(job.params, progress=False))


def _pool_error(exc: BaseException) -> BaseException:
    if isinstance(exc, BrokenProcessPool):
        return EvaluationWorkerDied(
            "an evaluation worker process died (killed, out of memory or a crash in native code); "
            "rerun with --executor serial to see where"
        )
    return exc


class EvaluationWorkerDied(Unavailable):
    """A worker process or Ray actor ended without an answer (killed, out of memory, a native crash): no
    report for its run; running again, or with fewer workers, may go through."""


def _stop(pool: ProcessPoolExecutor) -> None:
    """Shut the pool down without waiting: a worker still starting (its runs were all taken) or still
    driving after a failure is terminated (Python 3.14 has `terminate_workers()`; before it, the pool's
    process table)."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    processes = dict(getattr(pool, "_processes", None) or {})
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes.values():
        if proc.is_alive():
            proc.terminate()
    for proc in processes.values():
        proc.join(timeout=10)


def make_executor(kind: str = DEFAULT_EXECUTOR, workers: int | None = None, ray_address: str | None = None):
    """The executor `--executor KIND --workers N [--ray-address ADDR]` asks for."""
    if kind not in EXECUTORS:
        raise UserError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if ray_address and kind != "ray":
        raise UserError("--ray-address goes with --executor ray")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if kind == "serial":
        return Serial()
    if kind == "process":
        return ProcessPool(workers)
    from pitlane.evaluate.ray_pool import RayPool

    return RayPool(workers, ray_address)
