"""release.yaml and release tags: what is accepted, and one clear error for each mistake."""

from __future__ import annotations

import pytest
import yaml

from pitlane.errors import UserError
from pitlane.release.config import RELEASE_FILE, check_tag, load, parse

MODEL = "127.0.0.1:5000/pitlane/models@sha256:" + "ab" * 32


def test_semver_tags():
    assert check_tag("v1.2.3") == (1, 2, 3, "")
    assert check_tag("v0.10.0-rc.1") == (0, 10, 0, "rc.1")
    for bad in ["1.2.3", "v1.2", "v01.2.3", "release-1", "v1.2.3+", "", "vX.Y.Z"]:
        with pytest.raises(UserError, match="not semantic versioning"):
            check_tag(bad)


def test_minimal_file_gets_defaults():
    cfg = parse({"version": "v1.0.0", "model": MODEL})
    assert cfg.model == MODEL
    assert cfg.images == {"sim": "127.0.0.1:5000/pitlane/sim", "car": "127.0.0.1:5000/pitlane/car"}
    assert cfg.targets == ("nuc-sim", "pi-car")
    assert cfg.gate.scenes == ("generated_track", "mini_monaco")  # pitlane's default policy


def test_round_trip_with_inline_policy(tmp_path):
    policy = {"scenes": ["generated_track"], "laps": 1, "min_laps_completed": 1}
    cfg = parse({"version": "v1.0.0", "model": MODEL, "gate": {"policy": policy}, "targets": ["pi-car"]})
    (tmp_path / RELEASE_FILE).write_text(cfg.to_yaml())
    again = load(tmp_path, "v1.0.0")
    assert again == cfg
    assert again.gate.laps == 1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model": "127.0.0.1:5000/pitlane/models:latest"}, "pinned by digest"),
        ({"model": "127.0.0.1:5000/pitlane/models@sha256:abc"}, "pinned by digest"),
        ({"version": "1.0"}, "not semantic versioning"),
        ({"modle": MODEL}, "unknown key"),
        ({"gate": {"policy": {"lapz": 1}}}, "unknown key"),
        ({"gate": {"policy": "policies/missing.yaml"}}, "does not exist"),
        ({"gate": "strict"}, "gate must be a mapping"),
        ({"targets": ["mars-rover"]}, "targets must be"),
        ({"images": {"sim": "x/sim:latest", "car": "x/car"}}, "no tag"),
        ({"images": {"sim": "x/sim"}}, "exactly sim and car"),
    ],
)
def test_bad_release_files(changes, message):
    doc = {"version": "v1.0.0", "model": MODEL, **changes}
    with pytest.raises(UserError, match=message):
        parse(doc)


def test_missing_keys_and_not_a_mapping():
    with pytest.raises(UserError, match="missing 'model'"):
        parse({"version": "v1.0.0"})
    with pytest.raises(UserError, match="expected a mapping"):
        parse(["model"])


def test_tag_with_no_release_file(tmp_path):
    with pytest.raises(UserError, match="no release.yaml at v1.0.0"):
        load(tmp_path, "v1.0.0")


def test_tag_and_file_disagree(tmp_path):
    (tmp_path / RELEASE_FILE).write_text(yaml.safe_dump({"version": "v1.0.0", "model": MODEL}))
    with pytest.raises(UserError, match="is for v1.0.0, but the tag is v1.0.1"):
        load(tmp_path, "v1.0.1")


def test_broken_yaml(tmp_path):
    (tmp_path / RELEASE_FILE).write_text("version: [v1\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load(tmp_path)
