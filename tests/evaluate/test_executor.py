"""Runs fanned out: a process pool (and Ray) give the serial reports byte for byte; a worker that dies or
refuses the model's bytes is one clear error, not a hang; the executor asked for is checked first."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import threading
import time
from dataclasses import replace

import pytest

from pitlane.cli import main
from pitlane.errors import UserError
from pitlane.evaluate.executor import (
    EvaluationWorkerDied,
    Job,
    PilotRef,
    ProcessPool,
    Serial,
    cpu_quota,
    default_workers,
    longest_first,
    make_executor,
)
from pitlane.evaluate.gate import GatePolicy, run_gate
from pitlane.evaluate.report import EvalParams
from pitlane.evaluate.runs import evaluate_runs, run_params
from pitlane.pilots.expert import ExpertPilot
from tests.evaluate.report_trees import assert_same_tree
from tests.helpers import wait_until

SCENE = "generated_track"


def untimed(reports):
    return [replace(r, wall_seconds=0.0) for r in reports]


def test_a_process_pool_gives_the_serial_reports_byte_for_byte(tmp_path):
    runs = run_params(EvalParams(laps=1, max_seconds=2.0), (0, 1), "both")
    serial = evaluate_runs(ExpertPilot(), SCENE, runs, tmp_path / "serial")
    pooled = evaluate_runs(ExpertPilot(), SCENE, runs, tmp_path / "pool", executor=ProcessPool(2))
    assert untimed(pooled.reports) == untimed(serial.reports)
    assert [r.run for r in pooled.reports] == ["ccw-seed0", "ccw-seed1", "cw-seed0", "cw-seed1"]
    # 4 runs x (report.json, trace.npz, 2 plots) + runs.json
    assert assert_same_tree(tmp_path / "serial", tmp_path / "pool") == 17
    workers_only = ProcessPool(2, drive_here=False)
    evaluate_runs(ExpertPilot(), SCENE, runs, tmp_path / "workers", executor=workers_only)
    assert_same_tree(tmp_path / "serial", tmp_path / "workers")


def test_the_comparison_with_the_expert_fans_out_too(tmp_path):
    """A model's runs and the expert's on the same runs go to the same workers; here the expert drives
    both sides, so the model's reports and its expert's are the same drives."""
    runs = run_params(EvalParams(laps=1, max_seconds=1.0, plots=False), (3,), "both")

    def run(executor, out):
        return evaluate_runs(ExpertPilot(), SCENE, runs, out, vs_expert=True, executor=executor)

    assert untimed(run(ProcessPool(3), tmp_path / "p").reports) == untimed(
        run(Serial(), tmp_path / "s").reports
    )
    assert_same_tree(tmp_path / "s", tmp_path / "p")


def _kill_first_worker(stop: threading.Event, before: set[int | None]) -> None:
    """Once the pool's workers have run a second, kill one; again while the pool runs (a worker that had
    already exited, or a child an earlier test left behind, is not the pool's)."""
    while not stop.is_set():
        pids = [p.pid for p in multiprocessing.active_children() if p.pid is not None and p.pid not in before]
        if pids:
            time.sleep(1.0)  # started, and likely driving
            with contextlib.suppress(ProcessLookupError):
                os.kill(pids[0], signal.SIGKILL)
            continue
        time.sleep(0.02)


def test_a_worker_that_dies_is_one_clear_error_and_no_hang():
    # more runs than this process drives before the worker is up: the pool must meet the dead worker
    jobs = [Job(SCENE, EvalParams(laps=3, seed=s, plots=False)) for s in range(40)]
    stop = threading.Event()
    before = {p.pid for p in multiprocessing.active_children()}
    killer = threading.Thread(target=_kill_first_worker, args=(stop, before), daemon=True)
    killer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(EvaluationWorkerDied, match="an evaluation worker process died") as caught:
            ProcessPool(2).map(ExpertPilot(), jobs)
    finally:
        stop.set()
    assert "\n" not in str(caught.value)
    assert time.monotonic() - t0 < 120, "the pool must give up, not wait for the dead worker"
    assert wait_until(lambda: not multiprocessing.active_children()), "workers left behind"


def test_the_default_workers_are_the_cores_a_container_may_use(tmp_path):
    cores = len(os.sched_getaffinity(0))
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "cpu.max").write_text("max 100000\n")  # no limit
    assert cpu_quota(tmp_path / "v2") is None and default_workers(tmp_path / "v2") == cores
    (tmp_path / "v2" / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one worker
    assert cpu_quota(tmp_path / "v2") == 0.5 and default_workers(tmp_path / "v2") == 1
    (tmp_path / "v1" / "cpu").mkdir(parents=True)
    (tmp_path / "v1" / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "v1" / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(tmp_path / "v1") == 1.0 and default_workers(tmp_path / "v1") == 1
    (tmp_path / "v1" / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no limit"
    assert cpu_quota(tmp_path / "v1") is None and cpu_quota(tmp_path / "none") is None


def test_executor_choices_are_checked_before_anything_loads(tmp_path, capsys):
    assert isinstance(make_executor("serial"), Serial)
    assert make_executor("process", 3).workers == 3
    assert make_executor("process").workers == default_workers() >= 1
    with pytest.raises(UserError, match="--executor must be one of process, ray, serial"):
        make_executor("gpu")
    with pytest.raises(UserError, match="--workers must be >= 1"):
        make_executor(workers=0)
    with pytest.raises(UserError, match="--ray-address goes with --executor ray"):
        make_executor("process", ray_address="ray://head:10001")
    model = tmp_path / "m.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3 not a real model")  # never loaded: the flags fail first
    args = ["evaluate", "--model", str(model), "--out", str(tmp_path / "e")]
    assert main([*args, "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert main(["gate", "--model", str(model), "--out", str(tmp_path / "g"), "--ray-address", "x"]) == 2
    assert "--ray-address goes with --executor ray" in capsys.readouterr().err


def test_without_ray_installed_the_ray_executor_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    with pytest.raises(UserError, match=r"pip install 'pitlane\[ray\]'"):
        make_executor("ray")
    argv = ["evaluate", "--pilot", "expert", "--out", str(tmp_path), "--executor", "ray"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pitlane[ray]" in err and "pipenv install --dev" in err


def test_only_pilots_a_worker_can_make_again_leave_this_process():
    class Scripted:
        name, digest, model_type = "scripted", "", "scripted"

        def bound_to(self, sim):
            return self

        def run(self, frame):
            return 0.0, 0.2

    jobs = [Job(SCENE, EvalParams(laps=1, max_seconds=0.2, plots=False, seed=s)) for s in (1, 2)]
    assert len(Serial().map(Scripted(), jobs)) == 2
    with pytest.raises(UserError, match="Scripted drives only in this process"):
        ProcessPool(2).map(Scripted(), jobs)
    assert len(ProcessPool(1).map(Scripted(), jobs)) == 2  # one worker: this process, no pool


@pytest.mark.slow
def test_a_model_goes_to_a_worker_by_path_and_digest_never_as_an_object(models):
    from pitlane.pilots.model import ModelPilot

    pilot = ModelPilot(models["a"])
    ref = PilotRef.of(pilot)
    assert (ref.kind, ref.path, ref.sha256) == ("model", str(models["a"].resolve()), pilot.sha256)
    assert len(pickle.dumps(ref)) < 1000  # names, not weights or an interpreter
    again = ref.load()
    assert (again.name, again.digest, again.model_type) == (pilot.name, pilot.digest, pilot.model_type)


@pytest.mark.slow
def test_a_worker_refuses_model_bytes_other_than_those_loaded_here(models, tmp_path):
    from pitlane.pilots.model import ModelPilot

    model = tmp_path / "pilot.tflite"
    shutil.copy(models["a"], model)
    pilot = ModelPilot(model)
    shutil.copy(models["b"], model)  # another model under the same name, after the gate loaded it
    refused = r"pilot.tflite has sha256 [0-9a-f]+\.\.\., not the expected"
    with pytest.raises(UserError, match=refused):
        PilotRef.of(pilot).load()  # what a worker does when it starts
    # through the pool (workers only: this process would drive these short runs before a worker starts)
    jobs = [Job(SCENE, EvalParams(laps=1, max_seconds=1.0, seed=s, plots=False)) for s in range(4)]
    with pytest.raises(UserError, match=refused) as caught:
        ProcessPool(2, drive_here=False).map(pilot, jobs)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_the_gate_on_workers_is_the_serial_gate_through_the_cli(models, tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "scenes: [generated_track, mini_monaco]\nlaps: 1\nmax_seconds: 1.5\nseeds: [1, 2]\n"
        "direction: both\nmin_laps_completed: 0\nmin_completion_rate: 0.5\n"
    )
    base = ["gate", "--model", str(models["a"]), "--policy", str(policy)]
    serial = main([*base, "--out", str(tmp_path / "serial"), "--executor", "serial"])
    table = capsys.readouterr().out
    pooled = main([*base, "--out", str(tmp_path / "pool"), "--workers", "3"])
    assert (pooled, capsys.readouterr().out) == (serial, table)
    # 2 scenes x 4 runs x 4 files, 2 runs.json, gate.json
    assert assert_same_tree(tmp_path / "serial", tmp_path / "pool") == 35


@pytest.mark.slow
def test_a_ray_worker_loads_the_shipped_bytes_against_the_digest(models, tmp_path):
    """What a Ray actor does, without a Ray: write the bytes that travelled, load them, refuse others."""
    from pitlane.evaluate.ray_pool import RayWorker, model_files
    from pitlane.pilots.model import ModelPilot

    model = tmp_path / "pilot.tflite"
    shutil.copy(models["a"], model)
    model.with_name("pilot.run.json").write_text('{"model_type": "linear"}')
    pilot = ModelPilot(model)
    ref = PilotRef.of(pilot)
    files = model_files(ref)
    assert sorted(files) == ["pilot.run.json", "pilot.tflite"]  # the run record travels with the model
    job = Job(SCENE, EvalParams(laps=1, max_seconds=1.0, plots=False, seed=3))
    worker = RayWorker(ref, files)
    assert isinstance(worker.pilot, ModelPilot) and worker.pilot.path != model  # its own copy
    assert untimed([worker.run(job).report]) == untimed([Serial().map(pilot, [job])[0].report])
    other = RayWorker(ref, dict(files, **{"pilot.tflite": models["b"].read_bytes()}))
    with pytest.raises(UserError, match="not the expected"):
        other.run(job)


@pytest.mark.slow
def test_ray_locally_gives_the_serial_reports(models, tmp_path):
    pytest.importorskip("ray")
    from pitlane.evaluate.ray_pool import RayPool
    from pitlane.pilots.model import ModelPilot

    pilot = ModelPilot(models["a"])
    policy = GatePolicy(
        scenes=("generated_track", "mini_monaco"),
        laps=1,
        max_seconds=1.5,
        direction="both",
        min_laps_completed=0,
    )
    serial = run_gate(pilot, policy, tmp_path / "serial")
    ray = RayPool(2)
    on_ray = run_gate(pilot, policy, tmp_path / "ray", executor=ray)
    assert untimed(on_ray.reports) == untimed(serial.reports) and on_ray.checks == serial.checks
    assert (
        assert_same_tree(tmp_path / "serial", tmp_path / "ray") == 19
    )  # 4 runs x 4 files, 2 runs.json, gate
    assert set(ray.timings) == {"start", "workers_ready", "runs"}


def test_the_longest_drives_go_first_and_an_unknown_scene_last():
    """Whoever is free takes the next run: longest first leaves the short ones to fill the end."""

    def job(scene: str, laps: int) -> Job:
        return Job(scene, replace(EvalParams(), laps=laps))

    jobs = [job("waveshare", 10), job("thunderhill", 2), job("no_such_scene", 5), job("mountain_track", 10)]
    assert longest_first(jobs) == [3, 0, 1, 2]  # 549 m, 210 m, 114 m, unknown
    assert longest_first([job("warren", 1), job("warren", 1)]) == [0, 1]  # ties keep their order
