"""Tubs as data bundles through the real registry: round trip to a tub donkeycar opens, deterministic chunks,
only what the registry lacks is sent (a resumed push, a grown tub), hostile bundles and broken tubs refused."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile

import pytest

from pitlane.artifacts import oci
from pitlane.artifacts.relay import Relay
from pitlane.data.origin import ORIGIN_FILE, read_origin
from pitlane.errors import Unavailable, UserError
from pitlane.fleet import tubbundle as tb


def files_of(tub) -> dict[str, bytes]:
    """The tub's files that a bundle carries, by relative name."""
    out = {p.name: p.read_bytes() for p in tub.iterdir() if p.is_file() and p.name != ORIGIN_FILE}
    out.update({f"images/{p.name}": p.read_bytes() for p in (tub / "images").iterdir()})
    return out


def tub_bytes(tub) -> int:
    return sum(len(v) for v in files_of(tub).values())


@pytest.mark.slow
def test_push_and_pull_round_trip(registry, make_tub, repo, tmp_path):
    tub = make_tub("tub", 1300)
    client = oci.Client(registry.host)
    pushed = tb.push_tub(client, tub, repo, car="car-1", model="sha256:" + "c" * 64)
    assert str(pushed.ref).startswith(f"{registry.host}/{repo}@sha256:")
    c = pushed.config
    assert c["schema"] == tb.SCHEMA and c["car"] == "car-1" and c["user"] is None and c["profile"] == "twin"
    assert c["records"] == 1300 and c["deleted"] == 0 and c["start"] <= c["end"]
    chunks = [(ch["title"], ch["records"]) for ch in c["chunks"]]
    assert chunks[:3] == [("catalog_0", 1000), ("catalog_0.images_0", 50), ("catalog_0.images_1", 50)]
    assert chunks[20:22] == [("catalog_0.images_19", 50), ("catalog_1", 300)]
    assert chunks[-1] == ("catalog_1.images_5", 50) and len(chunks) == 1 + 20 + 1 + 6
    assert pushed.ref.digest is not None
    manifest = json.loads(client.get_manifest(repo, pushed.ref.digest).data)
    assert manifest["artifactType"] == "application/vnd.pitlane.tub.v1"
    titles = [d["annotations"][tb.TITLE] for d in manifest["layers"]]
    assert titles == ["manifest.json", *(ch["title"] for ch in c["chunks"])]
    assert client.tags(repo) == [c["session"]]

    out = tmp_path / "pulled"
    remote = tb.pull_tub(
        oci.Client(registry.host), pushed.ref.with_tag(c["session"]).with_digest(pushed.ref.digest), out
    )
    assert remote.ref == pushed.ref
    assert files_of(out) == files_of(tub)  # byte for byte
    origin = read_origin(out)
    assert origin is not None and origin["ref"] == str(pushed.ref)
    from donkeycar.parts.tub_v2 import Tub

    pulled = Tub(str(out), read_only=True)
    try:
        records = list(pulled)
    finally:
        pulled.close()
    assert len(records) == 1300 and (out / "images" / records[5]["cam/image_array"]).is_file()


def test_the_same_tub_is_the_same_bundle_and_sends_nothing_again(registry, make_tub, repo):
    tub = make_tub("tub", 300)
    first = tb.push_tub(oci.Client(registry.host), tub, repo, car="car-1")
    client = oci.Client(registry.host)
    again = tb.push_tub(client, tub, repo, car="car-1")
    assert again.ref == first.ref and again.blobs_sent == 0 and again.blobs_skipped == 1 + 1 + 6 + 1
    assert client.sent < 20_000  # two manifest PUTs, no blob


@pytest.mark.slow
def test_a_tub_grown_by_ten_percent_sends_at_most_fifteen_percent(registry, make_tub, repo, tmp_path):
    tub = make_tub("tub", 1030)  # the last catalog and its last image block are partial
    tb.push_tub(oci.Client(registry.host), tub, repo, car="car-1")
    make_tub("tub", 103, seed=1)  # a second session: 10 % more records, into the same catalog
    client = oci.Client(registry.host)
    pushed = tb.push_tub(client, tub, repo, car="car-1")
    # manifest.json, catalog_1, its image block 0 (was partial) and the new blocks 1 and 2, the config
    assert pushed.config["records"] == 1133 and pushed.blobs_sent == 6
    assert client.sent <= 0.15 * tub_bytes(tub)
    tb.pull_tub(oci.Client(registry.host), pushed.ref, tmp_path / "pulled")
    assert files_of(tmp_path / "pulled") == files_of(tub)


@pytest.mark.slow
def test_an_interrupted_push_resumes_with_what_is_missing(registry, make_tub, repo, tmp_path):
    tub = make_tub("tub", 1200)
    relay = Relay(registry.host, cut_after=3000)  # the link dies after a few answers
    try:
        with pytest.raises(Unavailable):
            tb.push_tub(oci.Client(relay.host), tub, repo, car="car-1")
        relay.reset(cut_after=None)
        pushed = tb.push_tub(oci.Client(relay.host), tub, repo, car="car-1")
    finally:
        relay.close()
    assert pushed.blobs_skipped >= 1  # what the first try delivered is not sent again
    tb.pull_tub(oci.Client(registry.host), pushed.ref, tmp_path / "pulled")
    assert files_of(tmp_path / "pulled") == files_of(tub)


def test_deleted_records_are_carried_by_the_manifest(registry, make_tub, repo, tmp_path):
    from donkeycar.parts.tub_v2 import Tub

    tub = make_tub("tub", 50)
    t = Tub(str(tub))
    t.delete_records([3, 4])
    t.close()
    os.remove(tub / "images" / "3_cam_image_array_.jpg")  # donkeycar's tubclean may drop deleted images
    pushed = tb.push_tub(oci.Client(registry.host), tub, repo, user="alice")
    assert pushed.config["deleted"] == 2 and pushed.config["user"] == "alice" and pushed.config["car"] is None
    tb.pull_tub(oci.Client(registry.host), pushed.ref, tmp_path / "pulled")
    pulled = Tub(str(tmp_path / "pulled"), read_only=True)
    try:
        assert len(list(pulled)) == 48
    finally:
        pulled.close()


def test_a_broken_tub_is_refused_with_what_to_do(make_tub, tmp_path, registry, repo):
    tub = make_tub("tub", 20)
    os.remove(tub / "images" / "7_cam_image_array_.jpg")
    with pytest.raises(UserError, match=r"record 7 names image .*pitlane data check"):
        tb.push_tub(oci.Client(registry.host), tub, repo)
    other = make_tub("other", 5)
    os.remove(other / "images" / "2_cam_image_array_.jpg")
    os.symlink("/etc/passwd", other / "images" / "2_cam_image_array_.jpg")  # never read through a link
    with pytest.raises(UserError, match="record 2 names image"):
        tb.plan_tub(other)
    with pytest.raises(UserError, match="not a donkeycar tub"):
        tb.plan_tub(tmp_path)
    with pytest.raises(UserError, match="under data/"):
        tb.push_tub(oci.Client(registry.host), make_tub("x", 2), "models/x")


def hostile_bundle(client: oci.Client, repo: str, tub, evil: list[tuple[str, bytes, bytes]]) -> oci.Reference:
    """A bundle of `tub` whose first chunk also holds `evil` (name, data, tar type)."""
    plan = tb.plan_tub(tub)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        with tarfile.open(fileobj=io.BytesIO(tb.chunk_bytes(plan, plan.chunks[0])), mode="r:gz") as good:
            for m in good:
                tar.addfile(m, good.extractfile(m))
        for name, data, kind in evil:
            info = tarfile.TarInfo(name)
            info.size, info.type = len(data), kind
            if kind == tarfile.SYMTYPE:
                info.linkname, info.size = "/etc/passwd", 0
            tar.addfile(info, io.BytesIO(data))
    chunk = gzip.compress(buf.getvalue(), mtime=0)
    client.push_blob(repo, chunk)
    client.push_blob(repo, plan.manifest)
    config = oci.canonical_json(
        tb.bundle_config(
            plan,
            [{"title": "catalog_0", "digest": oci.sha256_digest(chunk), "records": 5}],
            car=None,
            user="x",
            session="s",
            model=None,
        )
    )
    client.push_blob(repo, config)
    manifest = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "artifactType": tb.ARTIFACT_TYPE,
            "config": oci.descriptor(tb.CONFIG_TYPE, config),
            "layers": [
                oci.descriptor(tb.MANIFEST_LAYER_TYPE, plan.manifest, {tb.TITLE: "manifest.json"}),
                oci.descriptor(tb.CHUNK_TYPE, chunk, {tb.TITLE: "catalog_0"}),
            ],
        }
    )
    return oci.Reference(
        client.registry, repo, None, client.push_manifest(repo, manifest, oci.sha256_digest(manifest))
    )


@pytest.mark.parametrize(
    "evil",
    [
        [("../escape.txt", b"x", tarfile.REGTYPE)],
        [("images/../../escape.txt", b"x", tarfile.REGTYPE)],
        [("images/link.jpg", b"", tarfile.SYMTYPE)],
        [("manifest.json", b"{}", tarfile.REGTYPE)],
        [("catalog_0.catalog", b"again", tarfile.REGTYPE)],
    ],
)
def test_a_hostile_chunk_is_refused_and_nothing_is_left(registry, make_tub, repo, tmp_path, evil):
    ref = hostile_bundle(oci.Client(registry.host), repo, make_tub("tub", 5), evil)
    with pytest.raises(UserError, match="may not hold"):
        tb.pull_tub(oci.Client(registry.host), ref, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tub"]  # no half-written tub beside it


def test_pull_refuses_other_artifacts_and_a_used_folder(registry, make_tub, repo, tmp_path):
    client = oci.Client(registry.host)
    config = oci.canonical_json({"x": 1})
    client.push_blob(repo, config)
    m = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": oci.descriptor(oci.OCI_CONFIG, config),
            "layers": [],
        }
    )
    ref = oci.Reference(registry.host, repo, None, client.push_manifest(repo, m, oci.sha256_digest(m)))
    with pytest.raises(UserError, match="is not a pitlane data bundle"):
        tb.pull_tub(client, ref, tmp_path / "out")
    pushed = tb.push_tub(client, make_tub("tub", 3), repo)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("mine")
    with pytest.raises(UserError, match="not an empty folder"):
        tb.pull_tub(client, pushed.ref, tmp_path / "used")
    assert (tmp_path / "used" / "x").read_text() == "mine"


def test_list_filters_by_car_date_and_model(registry, make_tub, tmp_path):
    client = oci.Client(registry.host)
    suffix = str(os.getpid())
    a = tb.push_tub(
        client, make_tub("a", 5), f"data/lsa-{suffix}", car=f"lsa-{suffix}", model="sha256:" + "a" * 64
    )
    b = tb.push_tub(client, make_tub("b", 5, seed=2), f"data/lsb-{suffix}", car=f"lsb-{suffix}")
    mine = {str(a.ref), str(b.ref)}
    everything = [str(r.ref) for r in tb.list_bundles(client)]
    assert mine <= set(everything)
    assert [str(r.ref) for r in tb.list_bundles(client, car=f"lsa-{suffix}")] == [str(a.ref)]
    assert str(a.ref) in {str(r.ref) for r in tb.list_bundles(client, model="sha256:" + "a" * 64)}
    assert str(b.ref) not in {str(r.ref) for r in tb.list_bundles(client, model="sha256:" + "a" * 64)}
    assert mine.isdisjoint(str(r.ref) for r in tb.list_bundles(client, since=b.config["end"] + 3600))


def test_a_chunk_that_unpacks_to_too_much_is_refused(registry, make_tub, repo, tmp_path, monkeypatch):
    pushed = tb.push_tub(oci.Client(registry.host), make_tub("tub", 60), repo)
    monkeypatch.setattr(tb, "MAX_EXPANDED_BYTES", 10_000)  # a gzip bomb meets the same limit, only later
    with pytest.raises(UserError, match="unpacks to more than"):
        tb.pull_tub(oci.Client(registry.host), pushed.ref, tmp_path / "out")
    assert not (tmp_path / "out").exists()
