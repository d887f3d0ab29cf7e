"""Records/s written by `pitlane data collect` (goal: >= 1,000 records/s), per tub-writer mode.

Prints, per mode, the end-to-end rate (what the CLI summary reports: twin start-up, driving, JPEG and
catalog writing, final flush), the steady driving-loop rate, and the CPU time per record on each side
(which, unlike the rates, does not depend on what else the shared machine is running). Then writes the stats PNG of a clean and a
heavily perturbed run so their label distributions can be compared.

    .venv/bin/python bench/bench_collect.py [--laps 10] [--scene generated_track] [--png-dir /tmp/bench_collect]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

from pitlane.data.collect import collect
from pitlane.data.stats import format_stats, plot_stats, tub_stats
from pitlane.twin.scenes import DEFAULT_SCENE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laps", type=int, default=10)
    parser.add_argument("--scene", default=DEFAULT_SCENE)
    parser.add_argument("--modes", default="process,thread,inline")
    parser.add_argument("--png-dir", type=Path, default=Path("out/bench/collect"))
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("out/bench"),
        help="where the tubs are written: file creation speed dominates, so this is the disk "
        "being measured (here /tmp creates files ~20x slower than the work tree)",
    )
    args = parser.parse_args()
    logging.disable(logging.INFO)
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} (others' work slows these figures)")
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"tubs written under {args.dir.resolve()}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for mode in args.modes.split(","):
            cpu0, child0 = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
            s = collect(
                args.scene, laps=args.laps, out=Path(tmp) / mode, noise="light", progress=False, writer=mode
            )
            child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            own_ms = (time.process_time() - cpu0) / s.records * 1e3
            child_ms = (
                max(0.0, child1.ru_utime + child1.ru_stime - child0.ru_utime - child0.ru_stime)
                / s.records
                * 1e3
            )
            loop = sum(r.drive_wall_s for r in s.scenes)
            print(
                f"writer={mode:8} {s.records} records, {s.laps} laps: {s.records_per_s:6.0f} records/s end to end "
                f"({s.wall_s:.2f} s), {s.records / loop:6.0f} records/s in the driving loop; CPU per record "
                f"{own_ms:.2f} ms here + {child_ms:.2f} ms in the writer process"
            )
        args.png_dir.mkdir(parents=True, exist_ok=True)
        for noise in ("none", "heavy"):
            out = Path(tmp) / f"{noise}"
            collect(args.scene, laps=min(args.laps, 3), out=out, noise=noise, progress=False, seed=1)
            stats = tub_stats(out)
            print(f"noise={noise}: " + format_stats(stats).replace("\n", "\n    "))
            print(f"    PNG: {plot_stats([stats], args.png_dir / f'stats_{noise}.png')}")


if __name__ == "__main__":
    main()
