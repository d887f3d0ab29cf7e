"""Fleet files: the repository's own, and each bad input named by file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitlane.cli import main
from pitlane.deploy.fleet import KINDS, OVERLAYS, load_fleet, parse_target
from pitlane.errors import UserError
from pitlane.images.plan import IMAGE_NAMES, IMAGES
from pitlane.release.config import TARGETS

from .conftest import ARGOCD

GOOD = "name: car-7\nkind: car\ncluster: car-7\narch: arm64\n"


def test_repository_fleet_has_the_nuc_and_a_car():
    targets = {t.name: t for t in load_fleet(ARGOCD)}
    assert targets["nuc"].kind == "sim" and targets["nuc"].overlay == "nuc-sim"
    assert targets["car-1"].kind == "car" and targets["car-1"].overlay == "pi-car"


def test_one_overlay_per_image_and_the_release_targets_are_those_overlays():
    """The image names live in pitlane.images.plan and the overlays in OVERLAYS; the fleet's kinds, their
    architectures and release.yaml's targets are derived from them, so they cannot drift apart."""
    assert set(OVERLAYS) == set(KINDS) <= set(IMAGE_NAMES)  # the notebook image serves the hub, not a target
    assert {name: arch for name, (_, arch) in KINDS.items()} == {n: IMAGES[n].arch for n in OVERLAYS}
    assert TARGETS == tuple(OVERLAYS.values()) == ("nuc-sim", "pi-car")  # the documented targets
    for overlay in TARGETS:
        assert (ARGOCD / "overlays" / overlay / "kustomization.yaml").is_file()


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (GOOD.replace("kind: car", "kind: truck"), "kind", "unknown kind 'truck'"),
        (GOOD.replace("arch: arm64", "arch: riscv64"), "arch", "unknown arch 'riscv64'"),
        (GOOD.replace("arch: arm64", "arch: amd64"), "arch", "does not match kind car"),
        (GOOD.replace("name: car-7", "name: Car_7"), "name", "lower-case"),
        (GOOD.replace("cluster: car-7\n", ""), "cluster", "non-empty string"),
        (GOOD + "zone: garage\n", "zone", "unknown field"),
        (GOOD.replace("cluster: car-7", "cluster: 'car 7'"), "cluster", "not an Argo CD cluster name"),
    ],
)
def test_bad_fleet_file_names_file_and_field(text, field, words):
    path = Path("argocd/fleet/car-7.yaml")
    with pytest.raises(UserError) as err:
        parse_target(path, text)
    assert str(err.value).startswith(f"{path}: ")
    assert repr(field) in str(err.value) and words in str(err.value)


def test_not_a_mapping_and_not_yaml_name_the_file():
    for text in ("- a list\n", "name: [unclosed\n"):
        with pytest.raises(UserError, match=r"^f\.yaml: "):
            parse_target(Path("f.yaml"), text)


def test_duplicate_car_name_names_both_files(argocd):
    (argocd / "fleet" / "car-9.yaml").write_text("name: car-1\nkind: car\ncluster: car-9\narch: arm64\n")
    with pytest.raises(UserError) as err:
        load_fleet(argocd)
    assert "car-1.yaml" in str(err.value) and "car-9.yaml: field 'name': duplicate name 'car-1'" in str(
        err.value
    )


def test_two_targets_on_one_cluster_are_refused(argocd):
    (argocd / "fleet" / "car-2.yaml").write_text("name: car-2\nkind: car\ncluster: car-1\narch: arm64\n")
    with pytest.raises(UserError, match=r"car-2\.yaml: field 'cluster': 'car-1' already runs 'car-1'"):
        load_fleet(argocd)


def test_empty_fleet_is_an_error(argocd):
    for f in (argocd / "fleet").glob("*.yaml"):
        f.unlink()
    with pytest.raises(UserError, match="no fleet files"):
        load_fleet(argocd)


def test_cli_reports_a_bad_fleet_file_in_one_line(argocd, capsys):
    bad = argocd / "fleet" / "car-1.yaml"
    bad.write_text(bad.read_text().replace("kind: car", "kind: tank"))
    assert main(["deploy", "check", "--root", str(argocd.parent)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"pitlane: error: {bad}: field 'kind': unknown kind 'tank' (one of sim, car)"
