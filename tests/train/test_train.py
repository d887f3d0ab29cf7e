"""Training through donkeycar's pipeline: model + TFLite + run record, reproducibility, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from pitlane.cli import main
from pitlane.errors import UserError
from pitlane.provenance import tub_digest
from pitlane.train import RunRecord, TrainParams, load_tubs, run_record_path, train_model

TINY = dict(epochs=2, batch_size=16, threads=1)


@pytest.mark.slow
def test_train_writes_donkeycar_model_tflite_and_run_record(make_tub, tmp_path):
    tub = make_tub(records=48)
    out = tmp_path / "models" / "pilot.keras"
    record = train_model([tub], out, TrainParams(seed=3, **TINY))

    assert out.is_file() and out.with_suffix(".tflite").is_file()
    saved = json.loads(run_record_path(out).read_text())
    assert saved["model_type"] == "linear"
    assert saved["input_shape"] == [120, 160, 3]
    assert saved["records_total"] == 48
    assert saved["tubs"][0]["digest"] == tub_digest(tub)
    assert saved["data_digest"].startswith("sha256:")
    assert saved["params"]["seed"] == 3 and saved["params"]["epochs"] == 2
    assert 1 <= saved["epochs_run"] <= 2
    assert len(saved["history"]["loss"]) == len(saved["history"]["val_loss"]) == saved["epochs_run"]
    assert saved["git_commit"] and saved["timings_s"]["train"] > 0
    assert saved["tflite_digest"].startswith("sha256:")
    assert RunRecord.load(run_record_path(out)) == record
    # donkeycar's own loader reads both files
    from donkeycar.config import Config
    from donkeycar.utils import get_model_by_type

    cfg = Config()
    cfg.IMAGE_H, cfg.IMAGE_W, cfg.IMAGE_DEPTH = 120, 160, 3
    kl = get_model_by_type("tflite_linear", cfg)
    kl.load(str(out.with_suffix(".tflite")))
    assert kl.get_input_shape("img_in")[1:].tolist() == [120, 160, 3]


@pytest.mark.slow
def test_same_seed_gives_the_same_training_curve(make_tub, tmp_path):
    tub = make_tub(records=40)
    a = train_model([tub], tmp_path / "a" / "m.keras", TrainParams(seed=7, **TINY))
    b = train_model([tub], tmp_path / "b" / "m.keras", TrainParams(seed=7, **TINY))
    assert a.history["loss"] == pytest.approx(b.history["loss"], rel=1e-5)
    assert a.history["val_loss"] == pytest.approx(b.history["val_loss"], rel=1e-5)


@pytest.mark.slow
def test_learning_rate_reaches_the_optimizer_and_changes_the_loss_curve(make_tub, tmp_path):
    """donkeycar 5.4 ignores LEARNING_RATE; --learning-rate is wired into the optimizer it compiles."""
    tub = make_tub(records=40)
    slow = train_model([tub], tmp_path / "a" / "m.keras", TrainParams(seed=7, learning_rate=1e-6, **TINY))
    fast = train_model([tub], tmp_path / "b" / "m.keras", TrainParams(seed=7, learning_rate=1e-2, **TINY))
    assert slow.params["optimizer"] == {"name": "adam", "learning_rate": pytest.approx(1e-6)}
    assert fast.params["optimizer"] == {"name": "adam", "learning_rate": pytest.approx(1e-2)}
    assert slow.params["learning_rate"] == 1e-6
    # same seed, same data, same first batch: only the step size differs, and so do the curves
    assert fast.history["loss"][0] != pytest.approx(slow.history["loss"][0], rel=1e-3)
    saved = json.loads(run_record_path(tmp_path / "b" / "m.keras").read_text())
    assert saved["params"]["optimizer"]["learning_rate"] == pytest.approx(1e-2)


def test_tub_digest_follows_content(make_tub, tmp_path):
    tub = make_tub(records=5)
    copy = shutil.copytree(tub, tmp_path / "copy")
    assert tub_digest(tub) == tub_digest(copy)
    image = sorted((copy / "images").iterdir())[0]
    image.write_bytes(image.read_bytes() + b"\0")
    assert tub_digest(tub) != tub_digest(copy)


def test_load_tubs_reads_records_and_image_shape(make_tub):
    info = load_tubs([make_tub(records=6)])
    assert info[0].records == 6 and info[0].image_shape == (120, 160, 3) and info[0].skipped == 0


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("no_manifest", "no manifest.json"),
        ("empty", "empty tub"),
        ("corrupt", "manifest"),
        ("missing_image", "is missing"),
    ],
)
def test_bad_tubs_are_named(case, message, make_tub, tmp_path):
    if case == "missing":
        path = tmp_path / "nope"
    elif case == "no_manifest":
        path = tmp_path / "plain"
        path.mkdir()
    elif case == "empty":
        path = make_tub("empty", records=0)
    elif case == "corrupt":
        path = make_tub("corrupt", records=3)
        (path / "manifest.json").write_text("{not json\n")
    else:
        path = make_tub("holes", records=3)
        sorted((path / "images").iterdir())[1].unlink()
    with pytest.raises(UserError, match=message) as err:
        load_tubs([path])
    assert str(path.name) in str(err.value) and "\n" not in str(err.value)


def test_empty_tub_list_is_refused():
    with pytest.raises(UserError, match="no tubs"):
        load_tubs([])


def test_too_few_records_for_validation(make_tub, tmp_path):
    with pytest.raises(UserError, match="too few"):
        train_model([make_tub(records=2)], tmp_path / "m.keras", TrainParams(**TINY))


def test_bad_params_are_refused():
    with pytest.raises(UserError, match="unknown model type"):
        TrainParams(model_type="transformer")
    with pytest.raises(UserError, match="batch_size: not a key donkeycar 5.4's training reads"):
        TrainParams(overrides={"batch_size": 3})
    with pytest.raises(UserError, match="learning rate must be a number in"):
        TrainParams(learning_rate=0.0)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    code = main(["train", "--tub", str(tmp_path / "missing"), "--out", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("pitlane: error: tub ") and "does not exist" in err
    assert "Traceback" not in err and err.count("\n") == 1
    code = main(["train", "--tub", str(tmp_path), "--out", str(tmp_path / "m.onnx")])
    assert code == 2 and "must end in .keras or .h5" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "LEARNING_RATE=5.0",
            "--set LEARNING_RATE: donkeycar 5.4's training ignores it; use --learning-rate",
        ),
        (
            "NO_SUCH_KEY=1",
            "--set NO_SUCH_KEY: not a key donkeycar 5.4's training reads; one of AUGMENTATIONS, AUG_BLUR",
        ),
        ("MIN_DELTA=fast", "--set MIN_DELTA='fast': MIN_DELTA takes a number >= 0"),
        ("MIN_DELTA=True", "--set MIN_DELTA=True: MIN_DELTA takes a number >= 0"),
        ("AUGMENTATIONS=['SHARPEN']", "AUGMENTATIONS takes a list of 'BRIGHTNESS', 'BLUR'"),
        ("MAX_EPOCHS=3", "--set MAX_EPOCHS: use --epochs"),
        ("MIN_DELTA", "--set expects KEY=VALUE, got 'MIN_DELTA'"),
    ],
)
def test_bad_set_is_one_line_before_tensorflow_loads(setting, message, make_tub, tmp_path):
    """Checked in a fresh interpreter, so it shows TensorFlow was never imported for a bad --set."""
    tub = make_tub(records=5)
    code = (
        "import sys; from pitlane.cli import main; "
        f"rc = main(['train', '--tub', {str(tub)!r}, '--out', {str(tmp_path / 'm.keras')!r}, '--set', {setting!r}]); "
        "print(rc, 'tensorflow' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.split()[-2:] == ["2", "False"]
    assert run.stderr.startswith("pitlane: error: --set ") and run.stderr.count("\n") == 1
    assert message in run.stderr


def test_existing_model_is_not_overwritten_silently(make_tub, tmp_path):
    out = tmp_path / "pilot.keras"
    out.write_bytes(b"a model someone cares about")
    with pytest.raises(UserError, match="already exists"):
        train_model([make_tub(records=10)], out, TrainParams(**TINY))
    assert out.read_bytes() == b"a model someone cares about"


def test_cli_expands_a_folder_of_tubs(make_tub, tmp_path, capsys):
    make_tub("tubs/a", records=3)
    make_tub("tubs/b", records=0)  # the empty one must be named, which shows both were expanded
    code = main(["train", "--tub", str(tmp_path / "tubs"), "--out", str(tmp_path / "m.keras")])
    assert code == 2 and "b fails the data checker: empty tub" in capsys.readouterr().err


# ---- training runs the data checker's rules: what `pitlane data check` rejects is never trained on


def _catalog(tub):
    return sorted(tub.glob("catalog_*.catalog"))[0]


def _blank_line(tub):
    lines = _catalog(tub).read_text().splitlines(keepends=True)
    _catalog(tub).write_text("".join(lines[:3] + ["\n"] + lines[3:]))


def _duplicate_record(tub):
    lines = _catalog(tub).read_text().splitlines(keepends=True)
    _catalog(tub).write_text("".join(lines[:5] + [lines[4]] + lines[5:]))


def _wrong_size_image(tub):
    from PIL import Image

    (name,) = (tub / "images").glob("2_*")  # record 2's frame
    Image.new("RGB", (80, 60)).save(name)


def _mostly_grayscale(tub):
    from PIL import Image

    for name in sorted((tub / "images").iterdir())[:8]:
        Image.open(name).convert("L").save(name)


@pytest.mark.parametrize(
    "spoil, message",
    [
        (_blank_line, "is blank"),
        (_duplicate_record, "_index other than their position"),
        (_wrong_size_image, "1 bad record(s) of 12 (first: record 2: cam/image_array has shape (60, 80, 3)"),
        (
            _mostly_grayscale,
            "8 bad record(s) of 12 (first: record 0: cam/image_array has shape (120, 160, 1)",
        ),
    ],
)
def test_training_refuses_what_the_checker_rejects(spoil, message, make_tub, tmp_path, capsys):
    tub = make_tub("spoilt", records=12)
    spoil(tub)
    assert main(["data", "check", str(tub)]) != 0 or message.startswith("1 channel")
    capsys.readouterr()
    code = main(["train", "--tub", str(tub), "--out", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert err.startswith(f"pitlane: error: tub {tub}") and err.count("\n") == 1
    assert not (tmp_path / "m.keras").exists()


def test_skip_bad_leaves_the_bad_records_out_and_keeps_the_tub(make_tub, tmp_path):
    tub = make_tub("spoilt", records=12)
    _wrong_size_image(tub)
    before = {p.name: p.read_bytes() for p in tub.iterdir() if p.is_file()}
    info = load_tubs([tub], skip_bad=True, work_dir=tmp_path / "work")[0]
    assert (info.records, info.skipped) == (11, 1) and info.train_path != str(tub)
    assert {
        p.name: p.read_bytes() for p in tub.iterdir() if p.is_file()
    } == before  # the user's tub as it was
    from donkeycar.parts.tub_v2 import Tub

    view = Tub(info.train_path, read_only=True)
    assert [r["_index"] for r in view] == [i for i in range(12) if i != 2]
    view.close()
    # problems of the whole tub are not records to skip
    _blank_line(tub)
    with pytest.raises(UserError, match="is blank"):
        load_tubs([tub], skip_bad=True, work_dir=tmp_path / "work")


@pytest.mark.slow
def test_train_with_skip_bad_says_how_many_records_it_used(make_tub, tmp_path, capsys):
    tub = make_tub("spoilt", records=40)
    _wrong_size_image(tub)
    args = ["train", "--tub", str(tub), "--out", str(tmp_path / "m.keras"), "--epochs", "1", "--threads", "1"]
    assert main([*args, "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "on 39 records (1 bad records skipped)" in err
    record = RunRecord.load(run_record_path(tmp_path / "m.keras"))
    assert record.records_total == 39 and record.extra["records_skipped"] == 1
