"""`pitlane twin ...`: scenes, snapshots, track export, the DonkeyCar protocol server and its checker."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys

from pitlane.args import check_output_dir, check_output_file
from pitlane.errors import UserError
from pitlane.twin import family
from pitlane.twin.conformance import conformant, format_table, results_json, run_checks
from pitlane.twin.limits import add_limit_arguments, limits_from_args
from pitlane.twin.protocol import DEFAULT_PORT
from pitlane.twin.randomization import DomainRandomization
from pitlane.twin.scenes import DEFAULT_SCENE, HAIRPIN_ROAD, SCENE_NAMES, load_scene
from pitlane.twin.server import serve
from pitlane.twin.sim import Sim
from pitlane.twin.snapshot import write_snapshot
from pitlane.twin.track import Track
from pitlane.twin.world import CONTROL_HZ


def add_commands(subparsers) -> None:
    twin = subparsers.add_parser(
        "twin",
        help="the digital twin: a headless DonkeyCar simulator",
        description="The digital twin: a headless, deterministic DonkeyCar simulator (tracks, RC car "
        "physics, camera) that donkeycar and gym-donkeycar drive like the Unity simulator.",
    )
    sub = twin.add_subparsers(dest="twin_command", metavar="COMMAND")
    twin.set_defaults(func=lambda args: (twin.print_help(), 2)[1])
    for add in (_add_scenes, _add_snapshot, _add_export, _add_serve, _add_check):
        add(sub)


def _add_scenes(sub) -> None:
    p = sub.add_parser(
        "scenes",
        help="list the built-in scenes with their size",
        description="List the built-in scenes (the names `load_scene` and the protocol accept).",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_scenes)


def _add_snapshot(sub) -> None:
    p = sub.add_parser(
        "snapshot",
        help="write PNGs of a scene: camera view, top-down map, frames along a lap",
        description="Write camera.png (the car's camera at the start line, enlarged), map.png (the track "
        "from above with the car in red and the strip's positions in blue) and strip.png "
        "(camera frames at evenly spaced points of one lap) into --out.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--scene", default=DEFAULT_SCENE, help="scene name (see `pitlane twin scenes`)")
    src.add_argument("--track", metavar="FILE", help="a track JSON file instead of a scene")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs (created if missing)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed: the rand_seed of generated_road and of domain randomisation (default 0)",
    )
    p.add_argument(
        "--at",
        type=float,
        default=0.0,
        metavar="METERS",
        help="place the car this far along the centerline from the start line (default 0)",
    )
    p.add_argument("--frames", type=int, default=8, help="frames in strip.png; 0 skips it (default 8)")
    p.add_argument("--randomize", action="store_true", help="apply domain randomisation to the frames")
    p.add_argument("--scale", type=int, default=4, help="enlargement of camera.png (default 4)")
    p.set_defaults(func=_snapshot)


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a scene's track as a JSON file you can edit and load",
        description="Write a scene's track as JSON: {name, width_m, style, centerline: "
        "[[x, y], ...]}. Edit it (a few points are enough; they are smoothed) "
        "and use it with `snapshot --track FILE`.",
    )
    p.add_argument("--scene", default=DEFAULT_SCENE, help="scene name")
    p.add_argument("--seed", type=int, default=0, help="rand_seed for generated_road")
    p.add_argument("--out", required=True, metavar="FILE", help="JSON file to write")
    p.set_defaults(func=_export)


def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the DonkeyCar simulator TCP protocol (for donkeycar / gym-donkeycar)",
        description="Run the twin as a DonkeyCar simulator server: clients (donkeycar's DonkeyGymEnv, "
        "gym-donkeycar with exe_path='remote') connect, pick a scene and drive, exactly as "
        "with the Unity simulator. Stops on Ctrl-C. Several clients can share one twin: the limits below "
        "keep one greedy or broken client from starving the others (refusals are logged).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}, like the Unity sim)",
    )
    p.add_argument(
        "--hz",
        type=float,
        default=CONTROL_HZ,
        help=f"telemetry rate in asynchronous mode [Hz] (default {CONTROL_HZ:g}, like the Unity sim)",
    )
    # the old name, kept working but hidden: one name (--hz) for a rate across commands
    p.add_argument("--stream-hz", dest="hz", type=float, help=argparse.SUPPRESS)
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the cars' start draws and of generated_road (default 0)"
    )
    p.add_argument("--quiet", action="store_true", help="log warnings only (benchmarks, scripts)")
    add_limit_arguments(p)
    p.set_defaults(func=_serve)


def _add_check(sub) -> None:
    p = sub.add_parser(
        "check",
        help="check that a simulator (the twin or Unity's) speaks the protocol donkeycar relies on",
        description="Connect to a DonkeyCar simulator (the twin or the Unity simulator) as a gym-donkeycar "
        "client would and check each step of the session: greeting, scene list, load_scene -> "
        "car_loaded, car/cam config, telemetry rate, keys and camera image, driving, reset_car, "
        "synchronous step_mode (optional), exit_scene. Prints a table of PASS/WARN/FAIL/SKIP; "
        "exit status 0 when no check failed, 1 when one did, 2 when nothing listens there.",
    )
    p.add_argument("--host", default="127.0.0.1", help="simulator address (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"simulator TCP port (default {DEFAULT_PORT})"
    )
    p.add_argument("--scene", default=DEFAULT_SCENE, help=f"scene to load (default {DEFAULT_SCENE})")
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="longest wait for each answer [s] (default 10: the Unity sim may take seconds to load a scene)",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.set_defaults(func=_check)


def _load(args: argparse.Namespace) -> Track:
    if getattr(args, "track", None):
        try:
            return Track.load(args.track)
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    try:
        return load_scene(args.scene, rand_seed=args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def _scenes(args: argparse.Namespace) -> int:
    rows = []
    for name in SCENE_NAMES:
        t = load_scene(name)
        rows.append(
            {
                "name": name,
                "length_m": round(t.length_m, 1),
                "width_m": t.width_m,
                "min_radius_m": round(t.min_radius_m, 2),
                "nodes": t.total_nodes,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'scene':<20}{'lap [m]':>8}{'width [m]':>11}{'min radius [m]':>16}")
        for r in rows:
            print(f"{r['name']:<20}{r['length_m']:>8}{r['width_m']:>11}{r['min_radius_m']:>16}")
        print("generated_road is a different random loop for every rand_seed.")
        print(
            f"{HAIRPIN_ROAD} (training only, not a Unity scene): generated_road with U-turns both ways, "
            "one per rand_seed."
        )
        print(
            "family:<split>:<index> (not a Unity scene): the track family, any shape and paint, splits "
            f"{', '.join(f'{k} {len(v)}' for k, v in family.SPLITS.items())} tracks; train on train, compare "
            'recipes on validation, test only to report (README "Generalisation").'
        )
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    if not math.isfinite(args.at):
        raise UserError("--at must be a number of meters")
    if args.frames < 0 or args.scale < 1 or args.scale > 16:
        raise UserError("--frames must be >= 0 and --scale 1..16")
    sim = Sim(_load(args), seed=args.seed, randomize=DomainRandomization() if args.randomize else None)
    car_radius = sim.params.vehicle.min_turn_radius_m
    if sim.track.min_radius_m < car_radius:
        print(
            f"warning: the tightest turn ({sim.track.min_radius_m:.2f} m radius) is tighter than the car "
            f"can steer ({car_radius:.2f} m); it must use the road's width there",
            file=sys.stderr,
        )
    if args.at:
        sim.set_pose(*sim.track.pose_at(args.at))
    check_output_dir(args.out)
    try:
        files = write_snapshot(sim, args.out, scale=args.scale, n_strip=args.frames)
    except OSError as exc:
        raise UserError(f"cannot write snapshot to {args.out}: {exc}") from exc
    for path in (files.camera, files.map, files.strip):
        if path:
            print(path)
    return 0


def _export(args: argparse.Namespace) -> int:
    check_output_file(args.out)
    track = _load(args)
    try:
        track.save(args.out)
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc}") from exc
    print(args.out)
    return 0


def _serve(args: argparse.Namespace) -> int:
    if not (0 <= args.port <= 65535):
        raise UserError(f"--port {args.port} outside 0..65535")
    if not (0.1 <= args.hz <= 1000):
        raise UserError(f"--hz {args.hz} outside 0.1..1000")
    limits = limits_from_args(args)  # UserError for a value out of range
    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    serve(
        host=args.host,
        port=args.port,
        stream_hz=args.hz,
        seed=args.seed,
        limits=limits,
        # one line on stdout once the socket listens: with --port 0 it says which port was chosen
        on_ready=lambda port: print(f"listening on {args.host}:{port}", flush=True),
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    if not (0 < args.port <= 65535):
        raise UserError(f"--port {args.port} outside 1..65535")
    if not (0 < args.timeout <= 600):
        raise UserError(f"--timeout {args.timeout} outside (0, 600] seconds")
    results = run_checks(args.host, args.port, args.scene, args.timeout)
    if args.json:
        print(json.dumps(results_json(results, args.host, args.port, args.scene), indent=1))
    else:
        print(format_table(results, args.host, args.port, args.scene))
    return 0 if conformant(results) else 1
