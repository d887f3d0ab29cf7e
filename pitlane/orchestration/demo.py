"""`pitlane demo`: the whole loop on embedded defaults, end to end, leaving pictures a person can open.

twin snapshot -> expert data (donkeycar tub) -> donkeycar linear model -> the gate drives it in the twin ->
the gated model is pushed to a local OCI registry, signed and verified -> the donkeycar car app pulls it by
digest (its model manager) and drives the twin; a tampered copy is refused while the car keeps driving.
Every step is the same code the CLI, the notebooks and the release pipeline call; this module only strings them together and says where things are.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pitlane.artifacts import bundle, oci, release_signing, signing, trust
from pitlane.artifacts.fetch import fetch_verified
from pitlane.artifacts.registry import Registry, RegistryConfig
from pitlane.errors import UserError
from pitlane.evaluate.gate import format_table
from pitlane.evaluate.report import EvalParams, Report
from pitlane.evaluate.run import evaluate
from pitlane.orchestration.recipe import UNSEEN_SCENE, Recipe, RecipeResult, default_recipe
from pitlane.pilots.model import ModelPilot
from pitlane.twin.scenes import DEFAULT_SCENE
from pitlane.twin.sim import Sim
from pitlane.twin.snapshot import write_snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoOptions:
    out: Path = Path("out/demo")
    drive_seconds: float = 60.0  # [s] wall-clock time the car app drives the twin (real time, 20 Hz loop)
    drive_scene: str = DEFAULT_SCENE
    seed: int = 0
    threads: int | None = None  # TensorFlow threads while training; None: all cores
    workers: int | None = None  # the gate's runs driven at once; None: the cores


def run_demo(opts: DemoOptions) -> int:
    """Run every stage; returns the process exit code (1 when the gate refuses the model)."""

    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    _stage(1, "the twin: snapshots of the default scene")
    snap = write_snapshot(Sim(opts.drive_scene, seed=opts.seed), out / "twin")
    print(f"  camera view, map and a lap of frames in {out / 'twin'}/")

    _stage(
        2,
        "expert data on two scenes and three roads with U-turns (randomised colours) -> donkeycar linear model "
        "-> a DAgger round (the model drives, the expert labels, retrain) -> the gate (laps in the twin)",
    )
    result = default_recipe(
        out / "recipe",
        recipe=Recipe(seed=opts.seed),
        threads=opts.threads,
        progress=True,
        overwrite=True,
        workers=opts.workers,
    )
    assert result.gate is not None  # default_recipe gates unless told not to
    print(format_table(result.gate.checks, result.gate.passed))
    if not result.gate.passed:
        print(f"\nThe gate refused the model; its reports and plots are in {out / 'recipe' / 'gate'}/.")
        return 1

    _stage(3, f"unseen scene: {UNSEEN_SCENE} (never in the training data)")

    unseen = evaluate(
        ModelPilot(result.tflite), UNSEEN_SCENE, EvalParams(laps=2, seed=opts.seed), report_dir=out / "unseen"
    )
    print(
        f"  {unseen.laps_completed}/{unseen.laps_requested} laps, mean |CTE| {unseen.mean_abs_cte:.3f} m, "
        f"ended by {unseen.end_reason}"
    )

    shipped, car, status = _ship_and_drive(opts, result.tflite)
    summary = _summary(started, result, unseen, shipped, car, status)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nDone in {summary['wall_seconds']} s. Open these:")
    for path in (
        snap.camera,
        snap.map,
        out / "recipe" / "gate",
        out / "unseen",
        out / "car",
        out / "car-model" / "status.json",
        out / "summary.json",
    ):
        print(f"  {path}")
    return 0


def _ship_and_drive(opts: DemoOptions, model: Path) -> tuple[dict, Report, dict]:
    """Stages 4 and 5: the model to a local registry (signed, verified), then the car app pulls and drives it."""
    out = opts.out
    _stage(4, "ship the model: push the gated bundle to a local registry, sign it, verify it")
    with Registry(RegistryConfig(storage=out / "registry")) as registry:
        t_ship = time.perf_counter()
        shipped = ship_model(model, registry.host, out / "keys")
        shipped["ship_seconds"] = round(time.perf_counter() - t_ship, 2)
        print(f"  pushed + signed {shipped['reference']}")
        print(f"  verified: cosign signature and gate attestation ({shipped['attestation']})")

        _stage(
            5,
            f"the car app pulls the model by digest and drives {opts.drive_scene} "
            f"({opts.drive_seconds:.0f} s, real time); a tampered copy is offered halfway",
        )
        car, status = drive_managed(opts, shipped, out)
    assert car.car is not None  # run_car always fills the car block
    print(
        f"  {car.laps_completed} laps, mean |CTE| {car.mean_abs_cte} m, loop {car.car.loop_hz} Hz, "
        f"{len(car.car.stops)} watchdog stops; model {status.get('reference')} (serial {status.get('serial')})"
    )
    print(f"  tampered copy refused: {status.get('error', '')}")
    return shipped, car, status


def _summary(
    started: float, result: RecipeResult, unseen: Report, shipped: dict, car: Report, status: dict
) -> dict:
    """summary.json: what each stage gave, in one file."""
    assert car.car is not None
    refused = status.get("error", "")
    return {
        "wall_seconds": round(time.perf_counter() - started, 1),
        "timings_s": result.timings_s,
        "model": str(result.tflite),
        "gate": "pass",
        "unseen_scene": {
            "scene": UNSEEN_SCENE,
            "laps_completed": unseen.laps_completed,
            "mean_abs_cte": unseen.mean_abs_cte,
        },
        "car": {
            "laps_completed": car.laps_completed,
            "mean_abs_cte": car.mean_abs_cte,
            "loop_hz": car.car.loop_hz,
        },
        "model_bundle": {
            "reference": shipped["reference"],
            "serial": shipped["serial"],
            "signed": True,
            "verified": True,
            "gate_attestation": shipped["attestation"],
            "ship_seconds": shipped["ship_seconds"],
            "car_ran": status.get("reference"),
            "tampered_reference": shipped["tampered"],
            "tampered_refused": bool(refused) and status.get("reference") == shipped["reference"],
            "tampered_refusal": refused,
        },
    }


DEMO_KEY_PASSWORD = "pitlane-demo"  # the demo's throwaway signing key only; real keys get theirs from the env


def ship_model(model: Path, registry: str, key_dir: Path) -> dict:
    """Push the gated model, sign it (the gate report becomes an attestation), verify both; also push a
    tampered copy (one byte of the model changed) carrying the original's signature, as an attacker would."""
    client = oci.Client(registry)
    repo = oci.Reference(registry, "pitlane/models")
    os.environ.setdefault(signing.PASSWORD_ENV, DEMO_KEY_PASSWORD)
    key_path, pub = Path(f"{key_dir}/release.key"), Path(f"{key_dir}/release.pub")
    if not key_path.is_file():
        key_path, pub = signing.generate_keys(key_dir / "release", overwrite=True)
    key = signing.load_private_key(key_path)
    serial = release_signing.highest_signed_serial(client, repo, key.public_key()) + 1  # the signer's serial
    report = bundle.default_gate_report(model)  # the demo's own gate run: the report it attests
    if report is None:
        raise UserError(f"{model} has no gate report beside it (../gate/gate.json): gate it first")
    good = bundle.pack(model, gate_report=report, serial=serial)
    ref = bundle.push(client, good, repo, (f"serial-{serial}", "demo"))
    release_signing.sign_release(client, ref, key, report.read_bytes(), serial)
    verified = fetch_verified(ref, signing.load_public_key(pub), None, client)  # what the car will check
    release = trust.check_release(verified)  # what the car will require
    tflite = bytearray(model.read_bytes())
    tflite[len(tflite) // 2] ^= 0x01
    tampered = bundle.push(
        client, good.replaced(bundle.TFLITE_NAME, bytes(tflite), serial=serial + 1), repo, ()
    )
    assert ref.digest is not None and tampered.digest is not None
    sig = client.get_manifest(repo.repository, signing.suffix_tag(ref.digest, "sig"))
    client.push_manifest(repo.repository, sig.data, signing.suffix_tag(tampered.digest, "sig"))
    return {
        "reference": str(ref),
        "serial": serial,
        "public_key": str(pub),
        "attestation": f"gate verdict {release.gate.verdict}",
        "tampered": str(tampered),
    }


def drive_managed(opts: DemoOptions, shipped: dict, out: Path):
    """The car app with its model manager: desired reference in a file (as the ConfigMap mounts it); halfway
    the file names the tampered copy. Returns the car's report and the model manager's status file."""
    from pitlane.car.run import RunOptions, run_car  # lazy: pitlane.car loads donkeycar at import time

    state = out / "car-model"
    ref_file = state / "model-ref"
    state.mkdir(parents=True, exist_ok=True)
    ref_file.write_text(shipped["reference"] + "\n")
    offer = threading.Timer(opts.drive_seconds / 2, lambda: ref_file.write_text(shipped["tampered"] + "\n"))
    overrides = {
        "MODEL_MANAGER": True,
        "MODEL_REF_FILE": str(ref_file),
        "MODEL_PUBLIC_KEY": shipped["public_key"],
        "MODEL_CACHE_DIR": str(state / "cache"),
        "MODEL_STATUS_FILE": str(state / "status.json"),
        "MODEL_POLL_S": 1.0,
        "MODEL_LATENCY_BUDGET_MS": 50.0,  # [ms] one 20 Hz loop: the demo runs on busy shared machines too
    }
    offer.start()
    try:
        car = run_car(
            RunOptions(
                model=None,
                scene=opts.drive_scene,
                duration_s=opts.drive_seconds,
                report_dir=str(out / "car"),
                port=0,
                web_port=0,
                overrides=overrides,
            )
        )
    finally:
        offer.cancel()
    status = json.loads((state / "status.json").read_text())
    return car, status


def _stage(n: int, what: str) -> None:
    print(f"\n== {n}. {what}", flush=True)
