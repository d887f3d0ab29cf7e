"""The pipeline's minimum gate policy: release.yaml may tighten it, never loosen it, and never ask for a gate
that cannot fail. A table of policies a tag might ask for, each accepted or refused naming the key."""

from __future__ import annotations

import pytest

from pitlane.errors import Refused
from pitlane.evaluate.gate import GatePolicy
from pitlane.release import policy
from pitlane.release.policy import effective_policy, floor, loosened, never_fails

FLOOR = GatePolicy.from_dict(
    {
        "scenes": ["generated_track"],
        "laps": 1,
        "seed": 0,
        "min_laps_completed": 1,
        "max_abs_cte": 0.45,
        "max_mean_abs_cte": None,
        "max_off_track_events": 0,
        "min_mean_speed": 0.3,
        "max_nonfinite_outputs": 0,
    }
)
NULLS = {
    "min_laps_completed": None,
    "max_abs_cte": None,
    "max_off_track_events": None,
    "min_mean_speed": None,
    "max_nonfinite_outputs": None,
}

# (what release.yaml asks, over the floor's own values) -> None (accepted) or the words the refusal names
TABLE = [
    ({}, None),  # the floor itself
    ({"scenes": ["generated_track", "mini_monaco"]}, None),  # more scenes
    ({"laps": 3, "min_laps_completed": 3}, None),  # more laps, a stricter lap count
    ({"seeds": [0, 1, 2]}, None),  # more seeds, the floor's among them
    ({"direction": "both"}, None),  # both directions include the track's own
    ({"random_start": True, "randomize": True}, None),  # harder runs
    ({"max_abs_cte": 0.3, "min_mean_speed": 0.6, "max_mean_abs_cte": 0.2}, None),  # stricter thresholds
    ({"min_completion_rate": 1.0}, None),  # a threshold the floor does not set
    ({"scenes": ["mini_monaco"]}, "scenes leave out generated_track"),
    ({"laps": 1, "scenes": ["generated_track"], "min_laps_completed": 0}, "min_laps_completed 0 (minimum 1)"),
    ({"max_abs_cte": 0.9}, "max_abs_cte 0.9 (minimum 0.45)"),
    ({"max_abs_cte": None}, "max_abs_cte null (minimum 0.45)"),
    ({"max_nonfinite_outputs": 3}, "max_nonfinite_outputs 3 (minimum 0)"),
    ({"min_mean_speed": 0.1}, "min_mean_speed 0.1 (minimum 0.3)"),
    ({"seed": 7}, "seeds leave out 0"),  # a cherry-picked start pose
    ({"seeds": [1, 2]}, "seeds leave out 0"),
    ({"max_seconds": 2.0}, "max_seconds 2.0 (the pipeline's is null)"),
    ({"direction": "cw"}, "direction cw (minimum null)"),
    ({"max_off_track_events": None, "max_abs_cte": 1.0}, "max_off_track_events null (minimum 0)"),
    (NULLS, "can never fail"),  # every threshold null: a NaN-only model would pass
    (NULLS | {"min_laps_completed": 0, "min_mean_speed": 0.0}, "can never fail"),  # vacuous bounds
]


@pytest.mark.parametrize(("asked", "refusal"), TABLE, ids=[str(a) for a, _ in TABLE])
def test_release_yaml_may_tighten_the_floor_but_never_loosen_it(asked, refusal):
    wanted = GatePolicy.from_dict(FLOOR.to_json() | asked)
    if refusal is None:
        assert effective_policy(FLOOR, wanted) == wanted
        return
    with pytest.raises(Refused) as exc:
        effective_policy(FLOOR, wanted)
    message = str(exc.value)
    assert refusal in message and "\n" not in message
    assert message.startswith("release.yaml's gate policy")


def test_every_loosened_key_is_named_in_one_line():
    wanted = GatePolicy.from_dict(
        FLOOR.to_json() | {"laps": 1, "max_abs_cte": 2.0, "scenes": ["mini_monaco"]}
    )
    assert loosened(FLOOR, wanted) == ["scenes leave out generated_track", "max_abs_cte 2.0 (minimum 0.45)"]


def test_the_shipped_floor_can_fail_and_the_default_gate_tightens_it(monkeypatch):
    monkeypatch.delenv(policy.FLOOR_ENV, raising=False)
    shipped = floor()
    assert not never_fails(shipped)
    assert shipped.max_nonfinite_outputs == 0  # a NaN-only model never passes a release
    assert loosened(shipped, GatePolicy()) == []  # `policy: default` is a valid release policy


def test_a_floor_that_can_never_fail_refuses_everything():
    empty = GatePolicy.from_dict(NULLS)
    assert never_fails(empty)
    with pytest.raises(Refused, match="can never fail"):
        effective_policy(empty, empty)
