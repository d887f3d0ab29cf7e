"""The training/validation split is by record and seed: a record keeps its side as the tub grows."""

from __future__ import annotations

from types import SimpleNamespace

from pitlane.train.split import split_records


def _records(n: int, session: str = "26-12-07_0", start: int = 0):
    return [
        SimpleNamespace(underlying={"_session_id": session, "_index": i}) for i in range(start, start + n)
    ]


def _indexes(records):
    return [r.underlying["_index"] for r in records]


def test_a_record_keeps_its_side_when_the_tub_grows():
    first = _records(500)
    grown = first + _records(500, session="26-12-07_1", start=500)  # a DAgger round appended
    train1, val1 = split_records(first, 0.2, seed=0)
    train2, val2 = split_records(grown, 0.2, seed=0)
    assert set(map(id, val1)) <= set(map(id, val2)) and set(map(id, train1)) <= set(map(id, train2))
    assert 0.15 < len(val2) / len(grown) < 0.25


def test_the_seed_draws_the_split_and_the_training_order():
    records = _records(200)
    a, b, c = (split_records(records, 0.2, seed) for seed in (3, 3, 4))
    assert _indexes(a[0]) == _indexes(b[0]) and _indexes(a[1]) == _indexes(b[1])
    assert set(_indexes(a[1])) != set(_indexes(c[1]))
    assert _indexes(a[0]) != sorted(_indexes(a[0]))  # shuffled, as donkeycar's split shuffles
    assert _indexes(a[1]) == sorted(_indexes(a[1]))
    assert sorted(_indexes(a[0]) + _indexes(a[1])) == list(range(200))


def test_tiny_tubs_keep_a_record_on_each_side():
    for n in (2, 3, 5):
        train, val = split_records(_records(n), 0.2, seed=0)
        assert train and val and len(train) + len(val) == n
    for fraction in (0.0001, 0.9999):
        train, val = split_records(_records(2), fraction, seed=1)
        assert len(train) == len(val) == 1
