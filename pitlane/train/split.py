"""Training/validation split by record and seed, the same for a record however the tub grows.

donkeycar's `train_test_split` pops random records off the list with Python's global `random`, so a
record's side depends on how many records the tub holds and on every random number drawn before the split
(building or loading a model draws some). A DAgger retrain that starts from the previous model would then
validate on records that model trained on. Here a record is a validation record when a hash of the seed
and the record's identity (session, index) falls under the validation fraction: it stays on its side as
records are added, whatever ran before. The training records are then shuffled by the seed, as donkeycar's
pops shuffle them, and that order is the stream donkeycar's pipeline feeds every epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator, Sequence
from typing import Any

HASH_SPACE = float(2**64)


def record_key(record: Any) -> str:
    """A record's identity in its tub: its session and its index (donkeycar's `_session_id`, `_index`);
    a sequence of records (donkeycar's sequence models) is known by its first."""
    first = record[0] if isinstance(record, list) else record
    underlying = first.underlying
    return f"{underlying.get('_session_id', '')}/{underlying.get('_index', '')}"


def _unit(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / HASH_SPACE


def split_records(records: Sequence[Any], validation: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(training records in a seeded random order, validation records in tub order), for donkeycar
    TubRecords (`record.underlying`). At least one record on each side when there are two or more."""
    draws = [_unit(seed, record_key(r)) for r in records]
    val = [i for i, u in enumerate(draws) if u < validation]
    if len(records) >= 2 and not val:  # a tiny tub: the record drawn lowest validates
        val = [min(range(len(records)), key=draws.__getitem__)]
    if len(records) >= 2 and len(val) == len(records):
        val.remove(max(val, key=draws.__getitem__))
    chosen = set(val)
    train = [r for i, r in enumerate(records) if i not in chosen]
    random.Random(seed).shuffle(train)
    return train, [records[i] for i in val]


@contextlib.contextmanager
def stable_split(seed: int) -> Iterator[None]:
    """While inside, donkeycar's `train` splits its records with `split_records` and `seed`."""
    import donkeycar.pipeline.training as training

    original = training.train_test_split

    def split(data_list, shuffle=True, test_size=0.2):
        return split_records(data_list, test_size, seed)

    training.train_test_split = split
    try:
        yield
    finally:
        training.train_test_split = original
