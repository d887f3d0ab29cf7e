"""The evaluation executor on Ray (`pip install 'pitlane[ray]'`): a local Ray, or a Ray cluster by address
(the NUC's RayCluster, argocd/components/ray-eval).

One Ray actor per worker loads the pilot once, as a process-pool worker does. A cluster's nodes do not see
this machine's files, so the model's bytes (and its run record, which holds the training's settings) travel
through Ray's object store once, and each actor writes them to a private folder and loads them against the
digest loaded here: another model's bytes are refused. Outcomes (reports, traces, plot bytes) come back and
are written here. Scenes travel by name: a scene given as a track file must exist on the cluster too.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pitlane.errors import Unavailable, UserError
from pitlane.evaluate.executor import (
    EvaluationWorkerDied,
    Job,
    PilotRef,
    drive_job,
    longest_first,
    progress_bar,
    quiet_job,
)
from pitlane.evaluate.run import Outcome, Pilot
from pitlane.provenance import run_record_path

RAY_MISSING = "--executor ray needs Ray: pip install 'pitlane[ray]' (`pipenv install --dev` has it)"
_WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


def model_files(ref: PilotRef) -> dict[str, bytes]:
    """The model file's bytes and its run record's (when there is one), by file name."""
    if ref.kind != "model":
        return {}
    path = Path(ref.path)
    files = {path.name: path.read_bytes()}
    record = run_record_path(path)
    if record.is_file():
        files[record.name] = record.read_bytes()
    return files


class RayWorker:
    """A Ray actor's body (made an actor by `ray.remote` at run time): the pilot, loaded once."""

    def __init__(self, ref: PilotRef, files: dict[str, bytes]) -> None:
        self.pilot: Pilot | None = None
        self.error: BaseException | None = None
        try:
            import cv2

            cv2.setNumThreads(1)
            folder = Path(tempfile.mkdtemp(prefix="pitlane-ray-"))
            for name, data in files.items():
                (folder / name).write_bytes(data)
            self.pilot = ref.load(str(folder / Path(ref.path).name) if files else None)
        except Exception as exc:  # noqa: BLE001 - raised by the first job, as the process pool does
            self.error = exc

    def ready(self) -> bool:
        return True

    def run(self, job: Job) -> Outcome:
        if self.error is not None:
            raise self.error
        assert self.pilot is not None
        return drive_job(self.pilot, job)


class RayPool:
    """Runs on Ray: `workers` actors (default: the cluster's CPUs), each with one CPU."""

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        if workers is not None and workers < 1:
            raise UserError(f"--workers must be >= 1, got {workers}")
        import_ray()  # missing: one line now, before any model loads
        self.workers = workers
        self.address = address
        self.timings: dict[str, float] = {}  # [s] start (ray.init), workers_ready, runs: the last map's

    def map(self, pilot: Pilot, jobs: Sequence[Job], progress: bool = False) -> list[Outcome]:
        if not jobs:
            return []
        ray = import_ray()
        ref = PilotRef.of(pilot)
        t0 = time.perf_counter()
        started_here = not ray.is_initialized()
        if started_here:
            self._init(ray)
        t1 = time.perf_counter()
        actors: list[Any] = []
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            n = max(1, min(self.workers or cpus, cpus, len(jobs)))  # more actors than CPUs would wait
            files = ray.put(model_files(ref))
            actor = ray.remote(num_cpus=1)(RayWorker)
            actors = [actor.remote(ref, files) for _ in range(n)]
            ray.get([a.ready.remote() for a in actors])
            t2 = time.perf_counter()
            bar = progress_bar(len(jobs), progress)
            try:
                outcomes = _drive_all(ray, actors, [quiet_job(j) for j in jobs], bar)
            finally:
                if bar is not None:
                    bar.close()
            self.timings = {"start": t1 - t0, "workers_ready": t2 - t1, "runs": time.perf_counter() - t2}
            return outcomes
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
            raise _ray_error(ray)(exc) from None
        finally:
            for a in actors:
                ray.kill(a)
            if started_here:
                ray.shutdown()

    def _init(self, ray: Any) -> None:
        """`ray.init()`: the cluster at --ray-address (or $RAY_ADDRESS), else a local Ray on this machine."""
        kwargs: dict[str, Any] = {
            "log_to_driver": False,  # the workers' TensorFlow chatter stays in Ray's logs
            "runtime_env": {"env_vars": _WORKER_ENV},
        }
        if self.address is None:
            kwargs["include_dashboard"] = False
        try:
            ray.init(address=self.address, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises bare Exception too (a raylet start timed out)
            where = f"reach Ray at {self.address}" if self.address else "start a local Ray"
            raise Unavailable(f"cannot {where}: {' '.join(str(exc).split())}") from None


def _drive_all(ray: Any, actors: list[Any], jobs: list[Job], bar) -> list[Outcome]:
    """Each job to the next free actor, the longest first (no long run left driving alone at the end, none
    waiting behind a fixed share); outcomes in the jobs' order. The first error stops the dispatch and is raised."""
    outcomes: list[Any] = [None] * len(jobs)
    todo = [(i, jobs[i]) for i in longest_first(jobs)][::-1]  # popped from the end: the longest first
    running: dict[Any, tuple[Any, int]] = {}

    def give(actor: Any) -> None:
        if todo:
            i, job = todo.pop()
            running[actor.run.remote(job)] = (actor, i)

    for a in actors:
        give(a)
    while running:
        done, _ = ray.wait(list(running), num_returns=1)
        actor, i = running.pop(done[0])
        outcomes[i] = ray.get(done[0])
        if bar is not None:
            bar.update(1)
        give(actor)
    return outcomes


def _ray_error(ray: Any):
    def error(exc: BaseException) -> BaseException:
        if isinstance(exc, ray.exceptions.RayActorError):
            return EvaluationWorkerDied(
                "a Ray evaluation worker died (killed, out of memory or a crash in native code); "
                "rerun with --executor serial to see where"
            )
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, BaseException) else exc

    return error
