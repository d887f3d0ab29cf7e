"""The car's uploader through the real registry: finished tubs go home once, the one being written waits,
a tub is deleted only after its record is acked (and only unchanged), a gateway that is down, full or
answers garbage costs one log line and nothing else."""

from __future__ import annotations

import http.server
import logging
import os
import shutil
import threading

import pytest

from pitlane.artifacts import oci
from pitlane.fleet import protocol
from pitlane.fleet import tubbundle as tb
from pitlane.fleet.spool import Spool
from pitlane.fleet.uploader import Uploader


@pytest.fixture
def car(request):
    """A car name of its own per test (its repository data/<car> in the shared registry is fresh)."""
    return f"up{os.getpid()}-{abs(hash(request.node.name)) % 10**8}"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_uploader(tmp_path, car, client, **kw) -> Uploader:
    spool = kw.pop("spool", None) or Spool(tmp_path / "state" / "spool.db", car)
    return Uploader(spool, client, tmp_path / "data", tmp_path / "state", **kw)


def tub_records(spool: Spool) -> list[protocol.Record]:
    return [protocol.parse_record(p.payload) for p in spool.pending(100) if p.kind == protocol.TUB]


def test_finished_tubs_go_home_once_and_the_current_one_waits(tmp_path, registry, make_tub, car):
    data = tmp_path / "data"
    done = make_tub("tub_1", 30, folder=data)
    current = make_tub("tub_2", 10, folder=data)
    up = make_uploader(tmp_path, car, oci.Client(registry.host), current_tub=current)
    up.note_model("sha256:" + "d" * 64)  # the model driving while tub_2 is written
    up.pass_once()
    [record] = tub_records(up.spool)
    body = record.body
    assert body["records"] == 30 and body["ref"].startswith(f"{registry.host}/data/{car}@sha256:")
    remote = tb.fetch(oci.Client(registry.host), oci.Reference.parse(body["ref"]))
    assert remote.config["car"] == car and remote.config["session"] == body["session"]
    assert up.backlog() == (1, 30)  # home, but not acked yet
    up.pass_once()
    assert len(tub_records(up.spool)) == 1  # nothing pushed or spooled twice
    up.spool.ack([(record.seq, record.seq)])
    up.pass_once()
    assert up.backlog() == (0, 0) and done.exists()  # FLEET_DELETE_UPLOADED is off: the tub stays
    up.stop(budget_s=30.0)  # the car stopped: tub_2 is finished now
    [second] = tub_records(up.spool)  # the first was acked: it left the spool
    assert second.body["records"] == 10 and second.body["model"] == "sha256:" + "d" * 64
    # a restart reads what went home from its state file: nothing again
    again = make_uploader(tmp_path, car, oci.Client(registry.host), spool=up.spool)
    again.pass_once()
    assert tub_records(up.spool) == [second]


def test_a_tub_is_deleted_only_after_its_record_is_acked_and_only_unchanged(
    tmp_path, registry, make_tub, car
):
    data = tmp_path / "data"
    tub = make_tub("tub_1", 20, folder=data)
    up = make_uploader(tmp_path, car, oci.Client(registry.host), delete_uploaded=True)
    up.pass_once()
    [first] = tub_records(up.spool)
    up.pass_once()
    assert tub.exists()  # home, not acked: kept
    make_tub("tub_1", 5, seed=3, folder=data)  # more records before the ack arrives
    up.spool.ack([(first.seq, first.seq)])
    up.pass_once()
    assert tub.exists()  # acked, but what was acked is not what the tub holds now: pushed again
    [second] = tub_records(up.spool)
    assert second.body["records"] == 25 and second.body["ref"] != first.body["ref"]
    up.spool.ack([(second.seq, second.seq)])
    up.pass_once()
    assert not tub.exists() and data.exists() and up.backlog() == (0, 0)


def test_the_data_path_as_the_tub_is_emptied_not_removed(tmp_path, registry, make_tub, car):
    data = make_tub("data", 8)  # AUTO_CREATE_NEW_TUB = False: DATA_PATH is the tub
    up = make_uploader(tmp_path, car, oci.Client(registry.host), delete_uploaded=True)
    up.pass_once()
    [record] = tub_records(up.spool)
    up.spool.ack([(record.seq, record.seq)])
    up.pass_once()
    assert data.is_dir() and list(data.iterdir()) == []


def test_a_gateway_that_is_down_costs_one_line_and_nothing_else(tmp_path, registry, make_tub, car, caplog):
    tub = make_tub("tub_1", 12, folder=tmp_path / "data")
    clock = Clock()
    up = make_uploader(
        tmp_path, car, oci.Client("127.0.0.1:9", timeout_s=2), delete_uploaded=True, clock=clock
    )
    with caplog.at_level(logging.INFO, logger="pitlane.fleet.uploader"):
        for _ in range(4):
            up.pass_once()
            clock.t += 1000.0
        assert [r.getMessage() for r in caplog.records if "cannot upload" in r.getMessage()] != []
        assert len(caplog.records) == 1 and "tubs stay on the car" in caplog.records[0].getMessage()
        assert up.backlog() == (1, 12) and tub.exists() and up.spool.count() == 0
        up.client = oci.Client(registry.host)
        up.pass_once()
    assert len(tub_records(up.spool)) == 1 and any("answers again" in r.getMessage() for r in caplog.records)


class Garbage(http.server.BaseHTTPRequestHandler):
    """A registry that is full (507) or answers garbage (200 with nonsense)."""

    def _answer(self) -> None:
        full = self.server.full  # type: ignore[attr-defined]
        self.send_response(507 if full else 200)
        self.send_header("Content-Length", "9")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"\x00garbage!")

    do_GET = do_HEAD = do_POST = do_PUT = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("full", [True, False])
def test_a_full_or_garbage_gateway_keeps_the_tub(tmp_path, make_tub, car, caplog, full):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    server.full = full  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tub = make_tub("tub_1", 6, folder=tmp_path / "data")
        client = oci.Client(f"127.0.0.1:{server.server_address[1]}")
        up = make_uploader(tmp_path, car, client, delete_uploaded=True)
        with caplog.at_level(logging.WARNING, logger="pitlane.fleet.uploader"):
            up.pass_once()
        assert len(caplog.records) == 1 and "retrying with backoff" in caplog.records[0].getMessage()
        assert tub.exists() and up.spool.count() == 0 and up.backlog() == (1, 6)
    finally:
        server.shutdown()


def test_a_tub_that_cannot_be_bundled_is_named_once(tmp_path, registry, make_tub, car, caplog):
    tub = make_tub("tub_1", 6, folder=tmp_path / "data")
    os.remove(tub / "images" / "2_cam_image_array_.jpg")
    up = make_uploader(tmp_path, car, oci.Client(registry.host))
    with caplog.at_level(logging.ERROR, logger="pitlane.fleet.uploader"):
        up.pass_once()
        up.pass_once()
    assert len(caplog.records) == 1 and "cannot go home" in caplog.records[0].getMessage()
    assert up.backlog() == (1, 6) and up.spool.count() == 0


def test_a_record_the_spool_lost_is_spooled_again(tmp_path, registry, make_tub, car):
    make_tub("tub_1", 6, folder=tmp_path / "data")
    up = make_uploader(tmp_path, car, oci.Client(registry.host))
    up.pass_once()
    [lost] = tub_records(up.spool)
    up.spool.db.execute("DELETE FROM records")  # as after a corrupt spool that could not salvage it
    up.pass_once()
    [again] = tub_records(up.spool)
    assert again.seq > lost.seq and again.body == lost.body
    shutil.rmtree(tmp_path / "data")
    up.pass_once()
    assert up.backlog() == (0, 0)
