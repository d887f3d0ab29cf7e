"""`pitlane evaluate` (drive a model in the twin, write a report) and `pitlane gate` (pass/fail on a policy)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from pitlane.args import check_output_dir
from pitlane.errors import UserError
from pitlane.evaluate.executor import DEFAULT_EXECUTOR, EXECUTORS, Executor, make_executor
from pitlane.evaluate.gate import GateResult, check, format_table, load_policy, run_gate, write_gate
from pitlane.evaluate.parts import (
    RESULT_BUDGET,
    aggregate,
    load_summary,
    summary,
    write_summary,
)
from pitlane.evaluate.report import EvalParams
from pitlane.evaluate.run import Pilot, resolve_scenes, scene_track
from pitlane.evaluate.runs import RUNS_FILE, RunsSummary, evaluate_runs, parse_seeds, run_params
from pitlane.pilots.expert import EXPERT, ExpertPilot
from pitlane.pilots.model import ModelPilot, check_model_file, configure_threads
from pitlane.twin.scenes import DEFAULT_SCENE


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_evaluate(sub)
    _add_gate(sub)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="drive a model in the twin and write a report (JSON + plots)",
        description="Drive a .tflite/.keras model for N laps of a scene in the twin (20 Hz control) and write "
        "DIR/report.json, DIR/trace.npz and PNG plots. With --policy, check the report against a policy's "
        "thresholds and exit 1 if it fails.",
    )
    p.add_argument("--model", metavar="FILE", help="model file (.tflite, .keras or .h5)")
    p.add_argument("model_arg", nargs="?", metavar="MODEL", help="the model file given without --model")
    p.add_argument(
        "--pilot",
        choices=("model", EXPERT),
        default="model",
        help="who drives: the model (default) or the expert (pure pursuit on the twin's ground truth, the "
        "baseline; no model needed)",
    )
    p.add_argument("--scene", default=DEFAULT_SCENE, help=f"twin scene (default: {DEFAULT_SCENE})")
    p.add_argument("--laps", type=int, default=3, help="laps to drive (per run)")
    p.add_argument("--seed", type=int, default=0, help="seed of the start pose (the first seed of --seeds N)")
    p.add_argument(
        "--seeds",
        default=None,
        metavar="N|LIST",
        help="one run per seed: a count N (--seed .. --seed+N-1) or a list (3,7,11) (default: --seed only)",
    )
    p.add_argument(
        "--direction",
        choices=("ccw", "cw", "both"),
        default=None,
        help="drive the loop counter-clockwise, clockwise or both (one run each; default: the track's "
        "own driving order)",
    )
    p.add_argument(
        "--random-start",
        action="store_true",
        help="start each run at a point of the loop drawn from its seed (default: on the start line)",
    )
    p.add_argument(
        "--randomize",
        action="store_true",
        help="domain randomisation of the frames (light, tint, noise, camera jitter), drawn from the seed",
    )
    p.add_argument(
        "--vs-expert",
        action="store_true",
        help="also drive the expert on the same runs and report speed and mean |CTE| relative to it",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.json and plots (created)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        metavar="S",
        help="simulated time limit [s] (default: none, the laps end it)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--policy",
        metavar="FILE",
        default=None,
        help="also check the report against this gate policy's thresholds ('default' = pitlane's; "
        "default: no check)",
    )
    # the old name, hidden: a gate policy is --policy, as in `pitlane gate` (`model push --gate` is a report)
    p.add_argument("--gate", dest="policy", help=argparse.SUPPRESS)
    _add_executor_flags(p)
    p.set_defaults(func=_evaluate)


def _add_executor_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="runs driven at once (default: the cores this process may use; with Ray, the cluster's CPUs; "
        "1: one after another in this process)",
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=DEFAULT_EXECUTOR,
        help="where the runs are driven: process (worker processes here), ray (a local Ray, or the cluster "
        "at --ray-address; pip install 'pitlane[ray]'), serial (one after another in this process)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="the Ray cluster to drive on, e.g. ray://pitlane-ray-head-svc.pitlane.svc:10001 "
        "(default: $RAY_ADDRESS, else a local Ray)",
    )


def _add_gate(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "gate",
        help="evaluate a model on every scene of a gate policy; exit 0 on pass, 1 on fail",
        description="Drive the model on each scene of the policy, print the verdict table and write "
        "DIR/<scene>/report.json, plots and DIR/gate.json. Exit 0 if every threshold is met, 1 otherwise. "
        "In parts (one per CI job): `pitlane gate parts` lists them, `pitlane gate --only PART --summary-out "
        "FILE` drives one, `pitlane gate aggregate FILE...` gives the verdict.",
    )
    g.add_argument("--model", metavar="FILE", help="model file (.tflite, .keras or .h5); required")
    g.add_argument(
        "--policy",
        default=None,
        metavar="FILE",
        help="policy YAML/JSON (default: pitlane's, GatePolicy(); see examples/gate_policy.yaml)",
    )
    g.add_argument("--out", metavar="DIR", help="folder for the reports and gate.json (created); required")
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    g.add_argument(
        "--only",
        metavar="PART",
        default=None,
        help="drive one part of the gate (SCENE or SCENE:DIRECTION, as `pitlane gate parts` lists them): its "
        "reports, no gate.json, exit 0 once driven; the verdict is `pitlane gate aggregate`'s",
    )
    g.add_argument(
        "--summary-out",
        metavar="FILE",
        default=None,
        help=f"also write the run's summary for `pitlane gate aggregate` (one JSON line; a note when it takes more "
        f"than the {RESULT_BUDGET} bytes a Tekton result may: about 80 runs a part)",
    )
    _add_executor_flags(g)
    g.set_defaults(func=_gate)
    sub_gate = g.add_subparsers(dest="gate_command", metavar="{aggregate,parts}", required=False)
    a = sub_gate.add_parser(
        "aggregate",
        help="the verdict and gate.json of a gate driven in parts, from the parts' summaries",
        description="Check that the summaries are every part of one gate of one model under --policy, each "
        "run once, then write DIR/gate.json (and each scene's runs.json) as one `pitlane gate` run would and "
        "print the verdict. Exit 0 on pass, 1 on fail.",
    )
    a.add_argument(
        "summaries",
        nargs="+",
        metavar="SUMMARY",
        help="a file written by --summary-out, or its JSON text itself (as a Tekton array result gives it)",
    )
    a.add_argument("--policy", default=None, metavar="FILE", help="the policy the parts were driven under")
    a.add_argument("--out", required=True, metavar="DIR", help="folder for gate.json (created)")
    a.set_defaults(func=_aggregate)
    ps = sub_gate.add_parser(
        "parts",
        help="the parts of a gate, as a JSON list (a CI matrix's values)",
        description="Print the parts of the policy's gate as a JSON list: one per scene and direction, or "
        "per scene when the policy drives each track's own order.",
    )
    ps.add_argument("--policy", default=None, metavar="FILE", help="policy YAML/JSON (default: pitlane's)")
    ps.set_defaults(func=_parts)


def _policy(path: str | None):

    return load_policy(None if path in (None, "default") else path)


def _model(args: argparse.Namespace) -> str | None:
    """The model file asked for (checked: it exists, its bytes match its suffix), or None for the expert."""
    if args.pilot == EXPERT:
        if args.model or args.model_arg:
            raise UserError("--pilot expert drives without a model; leave out the model file")
        return None
    if args.model and args.model_arg:
        raise UserError(f"two models given ({args.model_arg} and --model {args.model}); give one")
    model = args.model or args.model_arg
    if not model:
        raise UserError("no model given: --model FILE (.tflite, .keras or .h5)")
    check_model_file(model)
    return str(model)


def _load(model: str) -> ModelPilot:
    """The model pilot, its digest taken once here; TensorFlow loads now (one thread: the car's)."""
    configure_threads(1)
    return ModelPilot(model)


def _evaluate(args: argparse.Namespace) -> int:
    # every argument is checked before TensorFlow loads (configure_threads): a mistake costs no wait
    model = _model(args)
    check_output_dir(args.out)
    if args.laps < 1:
        raise UserError(f"--laps must be >= 1, got {args.laps}")
    if args.max_seconds is not None and not (args.max_seconds > 0 and math.isfinite(args.max_seconds)):
        raise UserError(f"--max-seconds must be a positive number of seconds, got {args.max_seconds}")
    scene_track(args.scene, args.seed)
    policy = _policy(args.policy) if args.policy else None
    base = EvalParams(
        laps=args.laps,
        seed=args.seed,
        max_seconds=args.max_seconds,
        plots=not args.no_plots,
        progress=True,
        random_start=args.random_start,
        randomize=args.randomize,
    )
    runs = run_params(base, parse_seeds(args.seeds, args.seed), args.direction)
    executor = _executor(args)
    pilot: Pilot = ExpertPilot() if model is None else _load(model)
    runs_summary = evaluate_runs(
        pilot, args.scene, runs, args.out, vs_expert=args.vs_expert, executor=executor
    )
    _print_runs(runs_summary, Path(args.out))
    if policy is None:
        return 0
    reports = runs_summary.reports
    checks = tuple(c for r in reports for c in check(r, policy))
    wall = sum(r.wall_seconds for r in reports)
    result = GateResult(pilot.name, pilot.digest, policy, reports, checks, wall)
    result.save(Path(args.out) / "gate.json")
    print(format_table(checks, result.passed))
    return 0 if result.passed else 1


def _print_runs(summary: RunsSummary, out: Path) -> None:
    for report in summary.reports:
        laps = ", ".join(f"{t:.2f}" for t in report.lap_times) or "none"
        name = f"{report.scene} {report.run}" if report.run else report.scene
        print(
            f"{name}: {report.laps_completed}/{report.laps_requested} laps ({laps} s), "
            f"mean |CTE| {report.mean_abs_cte:.3f} m, max |CTE| {report.max_abs_cte:.3f} m, "
            f"mean speed {report.mean_speed:.2f} m/s, end: {report.end_reason}, "
            f"{report.wall_seconds:.1f} s wall"
        )
    if len(summary.reports) > 1 or summary.vs_expert is not None:
        print(summary.describe())
        print(f"runs: {out / RUNS_FILE}")
    else:
        print(f"report: {out / 'report.json'}")


def _executor(args: argparse.Namespace) -> Executor:
    """The executor asked for, checked (Ray installed, workers >= 1) before TensorFlow loads."""
    return make_executor(args.executor, args.workers, args.ray_address)


def _gate(args: argparse.Namespace) -> int:
    if not args.model or not args.out:
        raise UserError("pitlane gate needs --model FILE and --out DIR (or: pitlane gate aggregate | parts)")
    check_model_file(args.model)
    check_output_dir(args.out)
    if args.summary_out:
        check_output_dir(Path(args.summary_out).parent, "--summary-out")
    policy = _policy(args.policy)
    resolve_scenes(policy.scenes, policy.seed)  # a policy's unknown scene costs no TensorFlow load
    policy.part_runs(args.only)  # an unknown part, too
    executor = _executor(args)
    result = run_gate(
        _load(args.model),
        policy,
        args.out,
        plots=not args.no_plots,
        progress=True,
        executor=executor,
        only=args.only,
    )
    table = format_table(result.checks, result.passed)
    if args.only:  # a part's checks, not the gate's verdict
        failed = sum(not c.passed for c in result.checks)
        table = table.rsplit("\n", 1)[0] + (
            f"\nPART {args.only}: {len(result.checks) - failed}/{len(result.checks)} checks passed "
            "(the verdict is `pitlane gate aggregate`'s, over every part)"
        )
    print(table)
    if args.summary_out:
        stored = write_summary(summary(result, args.only), args.summary_out)
        if stored > RESULT_BUDGET:
            print(
                f"note: the summary takes {stored} bytes as a Tekton result, over the {RESULT_BUDGET} one may "
                "take: the release pipeline's gate-part refuses it (give the policy fewer seeds: one run each "
                "in every part); `pitlane gate aggregate` still reads it as a file",
                file=sys.stderr,
            )
    print(f"reports: {args.out} ({result.wall_seconds:.1f} s)", file=sys.stderr)
    return 0 if result.passed or args.only else 1


def _aggregate(args: argparse.Namespace) -> int:
    policy = _policy(args.policy)
    check_output_dir(args.out)
    result = aggregate([load_summary(s) for s in args.summaries], policy)
    write_gate(result, Path(args.out))
    print(format_table(result.checks, result.passed))
    print(f"gate: {Path(args.out) / 'gate.json'}", file=sys.stderr)
    return 0 if result.passed else 1


def _parts(args: argparse.Namespace) -> int:
    print(json.dumps(_policy(args.policy).parts()))
    return 0
