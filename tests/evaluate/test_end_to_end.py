"""Twin data -> donkeycar training -> closed-loop evaluation -> gate, both ways, through the CLI."""

from __future__ import annotations

import json

import pytest

from pitlane.cli import main

pytestmark = pytest.mark.slow  # trains a real model on twin data (about a minute on 2 cores)

SCENE = "generated_track"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from pitlane.data.collect import collect
    from pitlane.train import TrainParams, train_model

    root = tmp_path_factory.mktemp("e2e")
    collect([SCENE], laps=3, out=root / "tub", seed=1, noise="heavy", progress=False)
    record = train_model(
        [root / "tub"],
        root / "model" / "pilot.keras",
        TrainParams(epochs=6, batch_size=16, seed=1, threads=2),
    )
    return root, record


@pytest.fixture(scope="module")
def policy(trained):
    root, _ = trained
    path = root / "policy.yaml"
    path.write_text(
        f"scenes: [{SCENE}]\nlaps: 1\nmin_laps_completed: 1\nmax_abs_cte: 0.45\n"
        "max_off_track_events: 0\nmin_mean_speed: 0.5\n"
    )
    return path


@pytest.fixture(scope="module")
def sabotaged(trained):
    """The trained model with its steering output pinned to hard left (the weights of a broken training)."""
    import numpy as np
    import tensorflow as tf
    from donkeycar.parts.interpreter import keras_model_to_tflite

    root, record = trained
    model = tf.keras.models.load_model(record.model_path, compile=False)
    steer = model.get_layer("n_outputs0")
    kernel, _ = steer.get_weights()
    steer.set_weights([np.zeros_like(kernel), np.array([-1.0], np.float32)])
    path = root / "sabotaged" / "pilot.keras"
    path.parent.mkdir()
    model.save(path)
    keras_model_to_tflite(str(path), str(path.with_suffix(".tflite")))
    return path.with_suffix(".tflite")


def test_trained_model_passes_the_gate(trained, policy, tmp_path, capsys):
    _, record = trained
    code = main(["gate", "--model", record.tflite_path, "--policy", str(policy), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "GATE PASS" in out
    gate = json.loads((tmp_path / "gate.json").read_text())
    assert gate["verdict"] == "pass"
    report = json.loads((tmp_path / SCENE / "report.json").read_text())
    assert report["laps_completed"] == 1 and report["end_reason"] == "laps_completed"
    assert report["off_track_events"] == 0 and len(report["lap_times"]) == 1
    assert report["max_abs_cte"] < 0.45 and report["mean_speed"] > 0.5
    assert report["model_digest"] == record.tflite_digest
    assert (tmp_path / SCENE / "trajectory.png").is_file() and (tmp_path / SCENE / "cte_speed.png").is_file()


def test_sabotaged_model_fails_the_gate(sabotaged, policy, tmp_path, capsys):
    code = main(["gate", "--model", str(sabotaged), "--policy", str(policy), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "GATE FAIL" in out and "FAIL" in out.splitlines()[2]
    report = json.loads((tmp_path / SCENE / "report.json").read_text())
    assert report["end_reason"] == "off_track" and report["laps_completed"] == 0
    assert report["off_track_events"] == 1


def test_evaluate_with_gate_flag_and_keras_model(trained, policy, tmp_path, capsys):
    _, record = trained
    code = main(
        [
            "evaluate",
            record.model_path,
            "--scene",
            SCENE,
            "--laps",
            "1",
            "--out",
            str(tmp_path),
            "--policy",
            str(policy),
            "--no-plots",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"{SCENE}: 1/1 laps" in out and "GATE PASS" in out
    assert json.loads((tmp_path / "report.json").read_text())["laps_completed"] == 1
    assert not (tmp_path / "trajectory.png").exists()


def test_time_limit_is_reported(trained, tmp_path, capsys):
    _, record = trained
    code = main(
        [
            "evaluate",
            record.tflite_path,
            "--scene",
            SCENE,
            "--laps",
            "2",
            "--max-seconds",
            "3",
            "--out",
            str(tmp_path),
            "--no-plots",
            "--policy",
            "default",
        ]
    )
    assert code == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["end_reason"] == "time_limit" and report["sim_seconds"] == pytest.approx(3.0)


def test_bad_inputs_exit_2_with_one_line(trained, tmp_path, capsys):
    root, record = trained
    bad_policy = tmp_path / "p.yaml"
    bad_policy.write_text("min_laps: 3\n")
    not_a_model = tmp_path / "pilot.tflite"
    not_a_model.write_text("hello")
    cases = [
        (
            ["gate", "--model", record.tflite_path, "--policy", str(bad_policy), "--out", str(tmp_path)],
            "unknown key(s) min_laps",
        ),
        (["evaluate", str(not_a_model), "--out", str(tmp_path)], "is not a TFLite model"),
        (
            ["evaluate", record.tflite_path, "--scene", "moon", "--out", str(tmp_path)],
            "unknown scene 'moon'",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_untrained_model_fails_the_gate(policy, tmp_path, capsys):
    import tensorflow as tf
    from donkeycar.config import Config
    from donkeycar.parts.interpreter import keras_model_to_tflite
    from donkeycar.utils import get_model_by_type

    tf.keras.utils.set_random_seed(0)
    cfg = Config()
    cfg.IMAGE_H, cfg.IMAGE_W, cfg.IMAGE_DEPTH = 120, 160, 3
    path = tmp_path / "untrained.keras"
    get_model_by_type("linear", cfg).interpreter.model.save(path)
    keras_model_to_tflite(str(path), str(path.with_suffix(".tflite")))
    code = main(
        [
            "gate",
            "--model",
            str(path.with_suffix(".tflite")),
            "--policy",
            str(policy),
            "--out",
            str(tmp_path / "report"),
            "--no-plots",
        ]
    )
    assert code == 1 and "GATE FAIL" in capsys.readouterr().out
    report = json.loads((tmp_path / "report" / SCENE / "report.json").read_text())
    assert report["laps_completed"] == 0 and report["end_reason"] in ("off_track", "time_limit")


def test_bad_gate_policies_exit_2_before_driving(trained, tmp_path, capsys):
    _, record = trained
    cases = {
        "seed: -1\n": "seed must be an integer between 0",
        "max_abs_cte: -1\n": "max_abs_cte must be a number >= 0",
        "laps: 1000000000\n": "laps must be an integer between 1 and 100",
        "": "is empty",
        f"scenes: [{SCENE}, moon]\nlaps: 1\nmin_laps_completed: 1\n": "unknown scene 'moon'",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"p{i}.yaml"
        path.write_text(text)
        report = tmp_path / f"r{i}"
        assert main(["gate", "--model", record.tflite_path, "--policy", str(path), "--out", str(report)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not report.exists(), "a bad policy must be refused before the first scene drives"


def test_a_scene_given_as_a_path_reports_inside_report_and_nan_models_fail(trained, tmp_path, capsys):
    import numpy as np
    import tensorflow as tf
    from donkeycar.parts.interpreter import keras_model_to_tflite

    from pitlane.twin.scenes import load_scene

    root, record = trained
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    load_scene(SCENE).save(outside / "track.json")
    report = tmp_path / "deep" / "report"
    report.mkdir(parents=True)  # the climb below goes through it
    scene = f"{report}/../../elsewhere/track.json"  # a relative climb out of --report, as a policy may hold
    policy = tmp_path / "p.yaml"
    policy.write_text(f"scenes: ['{scene}']\nlaps: 1\nmin_laps_completed: 0\nmax_seconds: 3\n")
    model = tf.keras.models.load_model(record.model_path, compile=False)
    steer = model.get_layer("n_outputs0")
    kernel, _ = steer.get_weights()
    steer.set_weights([kernel, np.array([np.nan], np.float32)])  # NaN steering on every frame
    path = root / "nan" / "pilot.keras"
    path.parent.mkdir(exist_ok=True)
    model.save(path)
    keras_model_to_tflite(str(path), str(path.with_suffix(".tflite")))

    code = main(
        [
            "gate",
            "--model",
            str(path.with_suffix(".tflite")),
            "--policy",
            str(policy),
            "--out",
            str(report),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1 and "nonfinite_outputs <=" in out and "GATE FAIL" in out, err
    assert sorted(p.name for p in outside.iterdir()) == ["track.json"], (
        "a report was written outside --report"
    )
    result = json.loads((report / "track" / "report.json").read_text())
    assert result["nonfinite_outputs"] == result["steps"] > 0
