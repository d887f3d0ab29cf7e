"""`pitlane evaluate` (drive a model in the twin, write a report) and `pitlane gate` (pass/fail on a policy)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pitlane.evaluate.gate import GateResult, check, format_table, load_policy, run_gate
from pitlane.evaluate.report import EvalParams
from pitlane.evaluate.run import evaluate
from pitlane.pilots.model import configure_threads
from pitlane.twin.scenes import DEFAULT_SCENE


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="drive a model in the twin and write a report (JSON + plots)",
        description="Drive a .tflite/.keras model for N laps of a scene in the twin (20 Hz control) and write "
        "DIR/report.json, DIR/trace.npz and PNG plots. With --gate, check the report against a policy's "
        "thresholds and exit 1 if it fails.",
    )
    p.add_argument("model", metavar="MODEL", help="model file (.tflite, .keras or .h5)")
    p.add_argument("--scene", default=DEFAULT_SCENE, help=f"twin scene (default: {DEFAULT_SCENE})")
    p.add_argument("--laps", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", required=True, metavar="DIR", help="directory for report.json and plots")
    p.add_argument("--max-seconds", type=float, default=None, help="simulated time limit [s]")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--gate",
        metavar="POLICY",
        default=None,
        help="check the report against this policy's thresholds ('default' = pitlane's)",
    )
    p.set_defaults(func=_evaluate)

    g = sub.add_parser(
        "gate",
        help="evaluate a model on every scene of a gate policy; exit 0 on pass, 1 on fail",
        description="Drive the model on each scene of the policy, print the verdict table and write "
        "DIR/<scene>/report.json, plots and DIR/gate.json. Exit 0 if every threshold is met, 1 otherwise.",
    )
    g.add_argument("--model", required=True, metavar="MODEL", help="model file (.tflite, .keras or .h5)")
    g.add_argument("--policy", default=None, metavar="FILE", help="policy YAML/JSON (default: pitlane's)")
    g.add_argument("--report", required=True, metavar="DIR", help="directory for reports and gate.json")
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    g.set_defaults(func=_gate)


def _policy(path: str | None):

    return load_policy(None if path in (None, "default") else path)


def _evaluate(args: argparse.Namespace) -> int:

    policy = _policy(args.gate) if args.gate else None  # read the policy first: fail fast on a bad file
    configure_threads(1)
    params = EvalParams(
        laps=args.laps, seed=args.seed, max_seconds=args.max_seconds, plots=not args.no_plots, progress=True
    )
    report = evaluate(args.model, args.scene, params, args.report)
    laps = ", ".join(f"{t:.2f}" for t in report.lap_times) or "none"
    print(
        f"{report.scene}: {report.laps_completed}/{report.laps_requested} laps ({laps} s), "
        f"mean |CTE| {report.mean_abs_cte:.3f} m, max |CTE| {report.max_abs_cte:.3f} m, "
        f"mean speed {report.mean_speed:.2f} m/s, end: {report.end_reason}, {report.wall_seconds:.1f} s wall"
    )
    print(f"report: {Path(args.report) / 'report.json'}")
    if policy is None:
        return 0
    checks = tuple(check(report, policy))
    result = GateResult(report.model, report.model_digest, policy, (report,), checks, report.wall_seconds)
    result.save(Path(args.report) / "gate.json")
    print(format_table(checks, result.passed))
    return 0 if result.passed else 1


def _gate(args: argparse.Namespace) -> int:

    policy = _policy(args.policy)
    configure_threads(1)
    result = run_gate(args.model, policy, args.report, plots=not args.no_plots, progress=True)
    print(format_table(result.checks, result.passed))
    print(f"reports: {args.report} ({result.wall_seconds:.1f} s)", file=sys.stderr)
    return 0 if result.passed else 1
