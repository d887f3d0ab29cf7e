"""A tub's origin file names the data bundle it was pulled from; anything else reads as no origin."""

from __future__ import annotations

import json

from pitlane.data.origin import ORIGIN_FILE, bundle_refs, read_origin

REF = "127.0.0.1:5000/data/car-1@sha256:" + "a" * 64


def test_origin_of_pulled_and_other_tubs(tmp_path):
    pulled, other, broken = (tmp_path / n for n in ("pulled", "other", "broken"))
    for tub in (pulled, other, broken):
        tub.mkdir()
    (pulled / ORIGIN_FILE).write_text(json.dumps({"ref": REF, "records": 3}))
    (broken / ORIGIN_FILE).write_text("{not json")
    assert read_origin(pulled) == {"ref": REF, "records": 3}
    assert read_origin(other) is None and read_origin(broken) is None
    assert bundle_refs([pulled, other, broken, pulled]) == [REF]
