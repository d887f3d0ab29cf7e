"""`pitlane data collect | check | stats`: make, validate and summarise donkeycar tubs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pitlane.args import check_output_dir, check_output_file
from pitlane.data.check import MANUAL, check_tub, fix_tub, format_report, undo_fix
from pitlane.data.collect import collect, noise_from_flags
from pitlane.data.stats import format_stats, plot_stats, stats_png_path, tub_stats
from pitlane.data.tub import find_tubs, is_tub
from pitlane.errors import UserError
from pitlane.twin.world import CONTROL_HZ


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape wants H,W,C (e.g. 120,160,3), got {text!r}") from None
    if len(shape) != 3 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"--shape wants three positive numbers H,W,C, got {text!r}")
    return shape


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "data", help="driving data: collect tubs in the twin, check them, show stats"
    )
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    collect = sub.add_parser("collect", help="drive the expert in the twin and record a donkeycar tub")
    collect.add_argument(
        "--scene",
        action="append",
        required=True,
        help="twin scene to drive (repeat for several: one tub session per scene)",
    )
    collect.add_argument("--laps", type=int, default=2, help="laps per scene (default 2)")
    collect.add_argument("--out", type=Path, required=True, help="tub folder (created, or appended to)")
    collect.add_argument(
        "--seed", type=int, default=0, help="seed for start pose and perturbations (default 0)"
    )
    collect.add_argument(
        "--noise",
        default="light",
        choices=("none", "light", "heavy"),
        help="perturbation preset applied to what the car executes (labels stay correct)",
    )
    collect.add_argument(
        "--steer-noise", type=float, help="override: std of steering noise added [-1..1 units]"
    )
    collect.add_argument(
        "--drift-per-s", type=float, help="override: rate of deliberate drifts off the line [1/s]"
    )
    collect.add_argument("--speed-var", type=float, help="override: relative speed variation (0.2 = +-20%%)")
    collect.add_argument(
        "--hz", type=float, default=CONTROL_HZ, help=f"records per simulated second (default {CONTROL_HZ:g})"
    )
    collect.add_argument(
        "--writer",
        choices=("process", "thread", "inline"),
        default="thread",
        help="where donkeycar's Tub writes: a thread (default; overlaps slow disks), a child "
        "process, or inline (see bench/bench_collect.py)",
    )
    collect.set_defaults(func=_collect)

    check = sub.add_parser("check", help="validate tubs; exit 1 when anything is wrong")
    check.add_argument("tubs", nargs="+", type=Path, help="tub folders, or folders of tubs")
    check.add_argument(
        "--fix",
        action="store_true",
        help="mark bad records deleted (donkeycar's deleted_indexes) and repair metadata; "
        "never removes files, keeps originals as *.orig (--undo puts them back); "
        "a tub holding symlinks is left untouched",
    )
    check.add_argument(
        "--undo",
        action="store_true",
        help="put back every file an earlier --fix changed, from its *.orig copy",
    )
    check.add_argument(
        "--shape",
        type=_shape,
        help="expected image shape H,W,C (default: the tub's image_h/w/depth metadata, else the twin "
        "camera's 120,160,3)",
    )
    check.add_argument(
        "--force",
        action="store_true",
        help="with --fix: delete the records even when the expected shape matches none of them",
    )
    check.set_defaults(func=_check)

    stats = sub.add_parser("stats", help="records per session, angle/throttle histograms, PNG")
    stats.add_argument("tubs", nargs="+", type=Path, help="tub folders, or folders of tubs")
    stats.add_argument(
        "--out", type=Path, metavar="PNG|DIR", help="write the histograms to this .png, or to DIR/stats.png"
    )
    stats.set_defaults(func=_stats)


def _collect(args: argparse.Namespace) -> int:
    check_output_dir(args.out)

    noise = noise_from_flags(args.noise, args.steer_noise, args.drift_per_s, args.speed_var)
    summary = collect(
        args.scene,
        laps=args.laps,
        out=args.out,
        seed=args.seed,
        noise=noise,
        record_hz=args.hz,
        writer=args.writer,
    )
    print(summary.describe())
    return 0


def _check(args: argparse.Namespace) -> int:

    if args.undo and (args.fix or args.force or args.shape):
        raise UserError("--undo puts a tub back as it was; it takes no --fix, --force or --shape")
    if args.force and not args.fix:
        raise UserError("--force only changes what --fix deletes; give --fix too")
    tubs = find_tubs(args.tubs)
    if args.undo:
        for path in tubs:
            for action in undo_fix(path):
                print(f"{path}: {action}")
        return 0
    failed, fixable = 0, 0
    for path in tubs:
        report = check_tub(path, shape=args.shape, force=args.force)
        print(format_report(report))
        if report.ok:
            continue
        fixable += any(p.fix != MANUAL for p in report.problems)
        if args.fix:
            for action in fix_tub(report):
                print(f"  fix: {action}")
            after = check_tub(path, shape=args.shape, force=args.force)
            print(f"  after fix: {'OK' if after.ok else f'{len(after.problems)} problems remain'}")
            failed += not after.ok
        else:
            failed += 1
    hint = "; --fix can repair some of this (bad records marked deleted, originals kept)" if fixable else ""
    print(f"{len(tubs) - failed}/{len(tubs)} tubs OK" + ("" if args.fix else hint))
    return 1 if failed else 0


def _stats(args: argparse.Namespace) -> int:

    png = stats_png_path(args.out) if args.out else None  # checked before the tubs are read
    if png is not None:
        check_output_file(png)  # a file in its path, or a folder that is not writable
    tubs = find_tubs(args.tubs)
    missing = [str(p) for p in tubs if not is_tub(p)]
    if missing:
        raise UserError(f"not a donkeycar tub (no manifest.json): {', '.join(missing)}")
    all_stats = [tub_stats(p) for p in tubs]
    for stats in all_stats:
        print(format_stats(stats))
    if png is not None:
        print(f"wrote {plot_stats(all_stats, png)}", file=sys.stderr)
    return 0
