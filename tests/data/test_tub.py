"""Property-based fuzz of the raw tub reader and the checker: any bytes in a tub's files are reported, never
raised, and --fix followed by --undo puts every file back."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitlane.data.check import check_tub, fix_tub, format_report, undo_fix
from pitlane.data.tub import INPUTS, TYPES, read_raw_tub
from pitlane.data.tubfiles import UnsafePath
from pitlane.errors import UserError

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["catalog_0.catalog", "../x.catalog", "/etc/passwd", "0_cam_image_array_.jpg"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _line(value) -> str:
    return json.dumps(value)


def _plausible_record(i: int, extra: dict) -> dict:
    return {
        "cam/image_array": f"{i}_cam_image_array_.jpg",
        "user/angle": 0.1,
        "user/throttle": 0.2,
        "user/mode": "user",
        "_index": i,
        "_session_id": "25-01-01_0",
        "_timestamp_ms": 1000 + i,
        **extra,
    }


catalog_meta = st.fixed_dictionaries(
    {
        "paths": st.one_of(st.just(["catalog_0.catalog"]), st.lists(json_values, max_size=3)),
        "current_index": st.one_of(st.integers(-2, 6), json_values),
        "max_len": st.one_of(st.just(1000), json_values),
        "deleted_indexes": st.one_of(st.lists(st.integers(-1, 6), max_size=3), json_values),
    }
)
manifests = st.tuples(
    st.one_of(st.just(list(INPUTS)), json_values),
    st.one_of(st.just(list(TYPES)), json_values),
    st.one_of(st.just({}), json_values),
    st.one_of(st.just({"created_at": 1.0, "sessions": {"all_full_ids": ["25-01-01_0"]}}), json_values),
    st.one_of(catalog_meta, json_values),
).map(lambda lines: "".join(_line(v) + "\n" for v in lines))
records = st.lists(
    st.one_of(
        st.builds(
            _plausible_record, st.integers(0, 5), st.dictionaries(st.sampled_from(INPUTS), json_values)
        ),
        json_values.map(_line),
        st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    ),
    max_size=6,
).map(lambda lines: "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@FUZZ
@given(
    manifest=st.one_of(manifests, st.binary(max_size=200).map(lambda b: b.decode("latin-1"))),
    catalog=records,
    cut=st.booleans(),
    catalog_manifest=st.one_of(json_values.map(_line), st.just("")),
)
def test_any_tub_is_reported_never_raised_and_fix_is_undone(manifest, catalog, cut, catalog_manifest):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tub = root / "tub"
        (tub / "images").mkdir(parents=True)
        (root / "outside.txt").write_text("mine")
        (tub / "manifest.json").write_text(manifest, encoding="utf-8", errors="surrogateescape")
        (tub / "catalog_0.catalog").write_text(catalog + ("" if cut else "\n"), errors="surrogateescape")
        (tub / "catalog_0.catalog_manifest").write_text(catalog_manifest + "\n")
        for i in range(3):
            (tub / "images" / f"{i}_cam_image_array_.jpg").write_bytes(b"\xff\xd8 not really")
        before = _tree(root)

        raw = read_raw_tub(tub)
        assert isinstance(raw.lines, list)
        report = check_tub(tub)
        format_report(report)
        actions = fix_tub(report)
        assert all(isinstance(a, str) for a in actions)
        check_tub(tub)
        assert (root / "outside.txt").read_text() == "mine"
        try:
            undo_fix(tub)
        except (UserError, UnsafePath):
            assert _tree(root) == before  # nothing to undo: nothing was changed
        after = {k: v for k, v in _tree(root).items()}
        assert after == before, "--fix then --undo must give back every file as it was"
