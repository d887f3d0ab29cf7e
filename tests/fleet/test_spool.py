"""The durable spool: records survive reopening, leave only when acked, never reuse a seq (not even after a
corrupt or lost file), and stay within their size by thinning heartbeats only."""

from __future__ import annotations

import logging
import sqlite3
import threading

import pytest

from pitlane.fleet import protocol
from pitlane.fleet.spool import Spool, SpoolFull, salvage, seq_floor

NOW = 1_750_000_000.0  # [s] a plausible car clock


def event(n: int) -> dict:
    return {"type": "test", "detail": {"n": n}}


def heartbeat(**values) -> dict:
    return protocol.heartbeat_body("car-1", **values)


def open_spool(path, **kw) -> Spool:
    kw.setdefault("clock", lambda: NOW)
    return Spool(path, "car-1", **kw)


def test_append_pending_ack_and_reopen(tmp_path):
    spool = open_spool(tmp_path / "spool.db")
    records = [spool.append(protocol.EVENT, event(i)) for i in range(5)]
    seqs = [r.seq for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert seqs[0] == seq_floor(NOW) + 1  # a fresh spool starts at the clock in ms
    pending = spool.pending(3)
    assert [p.seq for p in pending] == seqs[:3]
    assert protocol.parse_record(pending[0].payload) == records[0]
    assert spool.ack([(seqs[0], seqs[1]), (10**15, 10**15)]) == 2  # unknown seqs are ignored
    assert spool.ack([(seqs[0], seqs[1])]) == 0  # acks are idempotent
    boot = spool.boot
    spool.close()

    again = open_spool(tmp_path / "spool.db")
    assert again.boot == boot and again.recovered_from is None
    assert [p.seq for p in again.pending(10)] == seqs[2:]
    assert [p.seq for p in again.pending(10, after=seqs[3])] == seqs[4:]
    new = again.append(protocol.EVENT, event(9))
    assert new.seq == seqs[-1] + 1 and new.boot == boot


def test_a_seq_is_never_reused_after_acks_delete_everything(tmp_path):
    spool = open_spool(tmp_path / "spool.db")
    last = [spool.append(protocol.EVENT, event(i)) for i in range(3)][-1].seq
    spool.ack([(1, last)])
    assert spool.count() == 0
    spool.close()
    assert open_spool(tmp_path / "spool.db").append(protocol.EVENT, event(3)).seq == last + 1


def test_an_unset_clock_starts_at_one(tmp_path):
    spool = Spool(tmp_path / "spool.db", "car-1", clock=lambda: 5.0)  # a Pi without RTC before NTP
    assert spool.append(protocol.EVENT, event(0)).seq == 1


def test_invalid_bodies_are_refused_before_anything_is_stored(tmp_path):
    spool = open_spool(tmp_path / "spool.db")
    with pytest.raises(protocol.ProtocolError, match="heartbeat lacks"):
        spool.append(protocol.HEARTBEAT, {"name": "car-1"})
    with pytest.raises(protocol.ProtocolError, match="heartbeat.name"):
        spool.append(protocol.HEARTBEAT, protocol.heartbeat_body("car-2"))
    with pytest.raises(protocol.ProtocolError, match="over the 65536 byte limit"):
        spool.append(protocol.EVENT, {"type": "x", "detail": {"x": "y" * 70_000}})
    assert spool.count() == 0
    assert spool.append(protocol.EVENT, event(1)).seq == seq_floor(NOW) + 1  # nothing consumed a seq


def test_appends_from_two_threads_get_distinct_seqs(tmp_path):
    spool = open_spool(tmp_path / "spool.db")
    got: list[int] = []

    def work(base):
        for i in range(50):
            got.append(spool.append(protocol.EVENT, event(base + i)).seq)

    threads = [threading.Thread(target=work, args=(k * 100,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 100 and spool.count() == 100


def fill(path, count: int) -> list[protocol.Record]:
    spool = open_spool(path)
    out = [spool.append(protocol.EVENT, event(i)) for i in range(count)]
    spool.close()
    return out


def damage(path, offset: int, length: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes((i * 97 + 13) % 256 for i in range(length)))


def test_a_corrupt_page_is_moved_aside_and_the_rest_salvaged(tmp_path, caplog):
    path = tmp_path / "spool.db"
    written = fill(path, 1200)
    size = path.stat().st_size
    damage(path, size // 2, 4096)  # a page in the middle of the records
    with caplog.at_level(logging.ERROR):
        spool = Spool(path, "car-1", clock=lambda: 1.0)  # a clock that cannot help: the file must
    assert spool.recovered_from is not None and spool.recovered_from.exists()
    assert spool.recovered_from.name.startswith("spool.db.corrupt-")
    lines = [r.getMessage() for r in caplog.records if "was corrupt" in r.getMessage()]
    assert len(lines) == 1 and "salvaged" in lines[0]
    kept = {p.seq: p.payload for p in spool.pending(10_000)}
    assert 800 < len(kept) < 1200  # most rows survive; the damaged page's rows are gone
    original = {r.seq: r.encode() for r in written}
    assert all(original[s] == payload for s, payload in kept.items())  # salvaged exactly as spooled
    new = spool.append(protocol.EVENT, event(99_999))
    assert new.seq > max(r.seq for r in written)  # never a seq the ingest may already hold
    assert Spool(path, "car-1", clock=lambda: 1.0).recovered_from is None  # the new file is sound


@pytest.mark.parametrize("where", ["header", "truncated", "garbage"])
def test_an_unreadable_file_starts_a_fresh_spool_above_the_clock(tmp_path, where, caplog):
    path = tmp_path / "spool.db"
    written = fill(path, 200)
    if where == "header":
        damage(path, 0, 100)
    elif where == "truncated":
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 3)
    else:
        path.write_bytes(b"\x00garbage" * 1000)
    later = NOW + 60.0
    with caplog.at_level(logging.ERROR):
        spool = Spool(path, "car-1", clock=lambda: later)
    assert spool.recovered_from is not None
    assert any("was corrupt" in r.getMessage() for r in caplog.records)
    assert spool.append(protocol.EVENT, event(0)).seq > max(r.seq for r in written)


def test_salvage_drops_rows_that_are_not_this_cars_records(tmp_path):
    path = tmp_path / "spool.db"
    fill(path, 3)
    db = sqlite3.connect(path)
    db.execute("UPDATE records SET payload=x'7b7d' WHERE seq=(SELECT min(seq) FROM records)")
    db.commit()
    db.close()
    rows, highest = salvage(path, "car-1")
    assert len(rows) == 2 and highest == seq_floor(NOW) + 3
    assert salvage(path, "car-2")[0] == []


def test_a_full_spool_thins_old_heartbeats_and_keeps_events(tmp_path, caplog):
    clock = [NOW]
    spool = Spool(tmp_path / "spool.db", "car-1", max_bytes=200_000, clock=lambda: clock[0])
    events = []
    with caplog.at_level(logging.WARNING):
        for i in range(1500):
            clock[0] += 1.0
            spool.append(protocol.HEARTBEAT, heartbeat(loop_hz=20.0, mode="user" * 40))
            if i % 100 == 0:
                events.append(spool.append(protocol.EVENT, event(i)).seq)
    assert spool.thinned > 0
    assert spool.used_bytes() <= 200_000 * 1.1
    assert any("thinned" in r.getMessage() for r in caplog.records)
    assert set(events) <= {p.seq for p in spool.pending(10_000) if p.kind == protocol.EVENT}
    beats = [protocol.parse_record(p.payload) for p in spool.pending(10_000) if p.kind == protocol.HEARTBEAT]
    old = [r.t for r in beats[:10]]
    assert len({int(t // 60) for t in old}) == len(old)  # the oldest kept are one per minute
    assert len(beats) < 1500 // 4
    assert beats[-1].t == clock[0]  # the newest are all there


def test_a_spool_full_of_events_refuses_heartbeats_but_never_events(tmp_path):
    spool = open_spool(tmp_path / "spool.db", max_bytes=50_000)
    for i in range(400):
        spool.append(protocol.EVENT, {"type": "x", "detail": {"n": i, "pad": "p" * 200}})
    with pytest.raises(SpoolFull):
        spool.append(protocol.HEARTBEAT, heartbeat())
    spool.append(protocol.EVENT, event(401))
    assert spool.count(protocol.EVENT) == 401 and spool.refused == 1
