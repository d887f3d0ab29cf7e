"""Tubs as OCI data bundles: a donkeycar tub in a registry, in chunks, every byte addressed by digest.

One OCI image manifest per tub (artifactType application/vnd.pitlane.tub.v1):

  config  application/vnd.pitlane.tub.config.v1+json  car or user, session, records, time range, model...
  layers  manifest.json (application/vnd.pitlane.tub.manifest.v1+json): the tub's donkeycar manifest, then
          per donkeycar catalog (catalog_<i>.catalog: up to 1,000 records), chunks of media type
          application/vnd.pitlane.tub.chunk.v1.tar+gzip:
            catalog_<i>           the catalog and its .catalog_manifest
            catalog_<i>.images_<k>  the images named by the catalog's lines k*50 .. k*50+49
          each a deterministic tar (sorted names, mtime 0, uid/gid 0, mode 0644) compressed by gzip
          (mtime 0, level 6)

donkeycar only appends lines to a catalog and never rewrites an image, so a full block of 50 images never
changes again: a tub that grew by 10 % sends its new image blocks, the one block that was partial, its
grown catalog (a few kB compressed) and the small manifest layers; an interrupted push resumes by the same
rule (the registry's HEAD says what it has). One chunk per catalog, as first planned, would resend a
whole grown catalog (up to 1,000 images): bench/bench_tub_upload.py measured 48 % instead of <= 15 %.
gzip takes the tar headers' overhead (512 bytes per small JPEG, ~20 %) off the wire.

A pull checks every digest, accepts only the file names a chunk may hold (no links, no paths leaving the
tub, no more than MAX_EXPANDED_BYTES unpacked), and rebuilds a tub donkeycar's `Tub` opens, with
`.pitlane-bundle.json` naming the bundle it came from (training lists it in its run record).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitlane.artifacts import oci
from pitlane.data import tubfiles
from pitlane.data.origin import ORIGIN_FILE
from pitlane.data.tub import IMAGE_TYPES, IMAGES, MANIFEST, RawTub, read_raw_tub
from pitlane.data.tubfiles import UnsafePath
from pitlane.errors import UserError
from pitlane.fleet import protocol

ARTIFACT_TYPE = protocol.TUB_MEDIA_TYPE
CONFIG_TYPE = "application/vnd.pitlane.tub.config.v1+json"
MANIFEST_LAYER_TYPE = "application/vnd.pitlane.tub.manifest.v1+json"
CHUNK_TYPE = "application/vnd.pitlane.tub.chunk.v1.tar+gzip"
SCHEMA = "pitlane.tub-bundle/1"
TITLE = "org.opencontainers.image.title"
DATA_PREFIX = "data/"  # every data bundle lives in a repository under data/
MAX_CHUNK_BYTES = 256 << 20  # [B] the NUC's gateway takes no larger body (FLEET_MAX_CHUNK_MB)
MAX_CONFIG_BYTES = 1 << 20  # [B]
MAX_EXPANDED_BYTES = 1 << 30  # [B] a chunk unpacks to no more than this (a gzip bomb stops here)
IMAGE_BLOCK = 50  # catalog lines whose images share a chunk
_CATALOG_TITLE = re.compile(r"^catalog_(\d+)$")
_IMAGES_TITLE = re.compile(r"^(catalog_\d+)\.images_(\d+)$")
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


@dataclass(frozen=True)
class Chunk:
    """One layer of chunked tub content: a catalog (and its manifest), or a block of its images."""

    title: str  # catalog_<i> or catalog_<i>.images_<k>
    records: int  # catalog lines it covers
    files: tuple[str, ...]  # names inside the tub: catalog_<i>.catalog(_manifest) or images/<name>


@dataclass(frozen=True)
class TubPlan:
    """What a tub's bundle holds, read (and checked) from the tub without trusting it."""

    path: Path
    manifest: bytes  # manifest.json as it is on disk
    chunks: tuple[Chunk, ...]
    records: int
    deleted: int
    start: float | None  # [s] unix time of the first record
    end: float | None  # [s] of the last record
    profile: str | None  # the tub's metadata "profile" (pitlane's car app writes it)

    def session(self) -> str:
        """A session name for the bundle's tag: the tub's folder name and its start time."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.start)) if self.start else "empty"
        return session_tag(f"{self.path.name}-{stamp}")


def session_tag(text: str) -> str:
    """`text` as a valid OCI tag (letters, digits, _ . -; at most 128 characters)."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:128]
    return tag if tag and (tag[0].isalnum() or tag[0] == "_") else ("_" + tag)[:128]


# --- reading a tub ----------------------------------------------------------------------------------
def plan_tub(path: str | Path) -> TubPlan:
    """The bundle plan of a donkeycar tub; UserError (one line, what to do) for what cannot be bundled."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise UserError(f"{path} is not a donkeycar tub (no {MANIFEST})")
    raw = read_raw_tub(path)
    if raw.unsafe:
        raise UserError(f"tub {path}: {raw.unsafe[0]}; a bundle carries plain files only")
    if raw.manifest_error:
        raise UserError(f"tub {path}: {raw.manifest_error}; see `pitlane data check {path}`")
    image_keys = [k for k, t in raw.input_types.items() if t in IMAGE_TYPES]
    deleted = {i for i in raw.deleted_indexes if isinstance(i, int)}
    chunks: list[Chunk] = []
    stamps: list[float] = []
    total = 0
    for catalog in raw.catalogs:
        if not catalog.exists:
            raise UserError(f"tub {path}: {catalog.name} is missing; see `pitlane data check {path}`")
        title = catalog.name.removesuffix(".catalog")
        chunks.append(Chunk(title, len(catalog.lines), (catalog.name, f"{title}.catalog_manifest")))
        for k in range(0, len(catalog.lines), IMAGE_BLOCK):
            block = catalog.lines[k : k + IMAGE_BLOCK]
            images: set[str] = set()
            for line in block:
                record = line.record or {}
                stamp = record.get("_timestamp_ms")
                if isinstance(stamp, int | float) and not isinstance(stamp, bool):
                    stamps.append(float(stamp) / 1000.0)
                images |= _images_of(path, record, image_keys, line.position, deleted)
            names = tuple(f"{IMAGES}/{name}" for name in sorted(images))
            chunks.append(Chunk(f"{title}.images_{k // IMAGE_BLOCK}", len(block), names))
        total += len(catalog.lines)
    profile = _metadata(raw).get("profile")
    return TubPlan(
        path=path,
        manifest=tubfiles.read_bytes(path, MANIFEST),
        chunks=tuple(chunks),
        records=total,
        deleted=len(deleted),
        start=min(stamps) if stamps else None,
        end=max(stamps) if stamps else None,
        profile=profile if isinstance(profile, str) else None,
    )


def _images_of(
    tub: Path, record: dict[str, Any], keys: list[str], position: int, deleted: set[int]
) -> set[str]:
    """The image files a record names; UserError for one that is not a plain file (unless deleted)."""
    out = set()
    index = record.get("_index", position)
    for key in keys:
        name = record.get(key)
        if not isinstance(name, str) or not name:
            continue
        if _IMAGE_NAME.match(name) and tubfiles.is_file(tub, f"{IMAGES}/{name}"):
            out.add(name)
        elif index not in deleted:
            raise UserError(
                f"tub {tub}: record {index} names image {name!r}, which is not a plain file in {IMAGES}/; "
                f"see `pitlane data check {tub}`"
            )
    return out


def _metadata(raw: RawTub) -> dict[str, str]:
    """donkeycar's metadata: a list of "key:value" strings (or a dict, in older tubs)."""
    meta = raw.metadata
    if isinstance(meta, dict):
        return {str(k): str(v) for k, v in meta.items()}
    out = {}
    for item in meta if isinstance(meta, list) else []:
        if isinstance(item, str) and ":" in item:
            key, _, value = item.partition(":")
            out[key] = value
    return out


def deterministic_tar(entries: list[tuple[str, bytes]]) -> bytes:
    """A tar of (name, bytes): sorted names, mtime 0, uid/gid 0, mode 0644: same content, same bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(entries):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def chunk_bytes(plan: TubPlan, chunk: Chunk) -> bytes:
    """The chunk's gzip'd tar, read through the tub's confined file access (no symlink followed)."""
    try:
        entries = [(name, tubfiles.read_bytes(plan.path, name)) for name in chunk.files]
    except (OSError, UnsafePath) as exc:
        raise UserError(f"tub {plan.path}: cannot read {exc}; see `pitlane data check {plan.path}`") from None
    return gzip.compress(deterministic_tar(entries), compresslevel=6, mtime=0)


# --- pushing -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pushed:
    ref: oci.Reference  # REGISTRY/REPO@sha256:...
    config: dict[str, Any]
    blobs_sent: int  # blobs the registry lacked
    blobs_skipped: int  # blobs it had already


def check_repository(repo: str) -> str:
    if not repo.startswith(DATA_PREFIX) or len(repo) <= len(DATA_PREFIX):
        raise UserError(
            f"data bundles live in repositories under {DATA_PREFIX} (e.g. data/alice); got {repo!r}"
        )
    return repo


def bundle_config(
    plan: TubPlan,
    chunks: list[dict[str, Any]],
    *,
    car: str | None,
    user: str | None,
    session: str,
    model: str | None,
) -> dict[str, Any]:
    """The bundle's config; `created` is the tub's last record time, so the same tub gives the same bundle."""
    end = plan.end if plan.end is not None else 0.0
    return {
        "schema": SCHEMA,
        "car": car,
        "user": user,
        "session": session,
        "records": plan.records,
        "deleted": plan.deleted,
        "start": plan.start,
        "end": plan.end,
        "model": model,
        "profile": plan.profile,
        "chunks": chunks,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end)),
    }


def push_tub(
    client: oci.Client,
    tub: str | Path,
    repo: str,
    *,
    car: str | None = None,
    user: str | None = None,
    model: str | None = None,
    session: str | None = None,
) -> Pushed:
    """Push a tub as a data bundle: each blob the registry lacks (one chunk in memory at a time), then the
    config, then the manifest by digest and under the session's tag. Rerun after an interruption, it sends
    only what is still missing."""
    check_repository(repo)
    plan = plan_tub(tub)
    session = session or plan.session()
    sent = skipped = 0

    def push(data: bytes) -> str:
        nonlocal sent, skipped
        digest = oci.sha256_digest(data)
        if client.blob_exists(repo, digest):
            skipped += 1
        else:
            client.push_blob(repo, data, digest)
            sent += 1
        return digest

    layers = [oci.descriptor(MANIFEST_LAYER_TYPE, plan.manifest, {TITLE: MANIFEST})]
    push(plan.manifest)
    chunks = []
    for chunk in plan.chunks:
        data = chunk_bytes(plan, chunk)
        if len(data) > MAX_CHUNK_BYTES:
            raise UserError(
                f"tub {plan.path}: {chunk.title} is {len(data) >> 20} MB, over the {MAX_CHUNK_BYTES >> 20} MB a chunk may be"
            )
        digest = push(data)
        layers.append(oci.descriptor(CHUNK_TYPE, data, {TITLE: chunk.title}))
        chunks.append({"title": chunk.title, "digest": digest, "records": chunk.records})
        del data
    config = bundle_config(plan, chunks, car=car, user=user, session=session, model=model)
    config_bytes = oci.canonical_json(config)
    push(config_bytes)
    manifest = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": oci.descriptor(CONFIG_TYPE, config_bytes),
            "layers": layers,
        }
    )
    digest = client.push_manifest(repo, manifest, oci.sha256_digest(manifest))
    client.push_manifest(repo, manifest, session)
    return Pushed(oci.Reference(client.registry, repo, None, digest), config, sent, skipped)


# --- reading a bundle ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Remote:
    ref: oci.Reference  # with its digest
    manifest: dict[str, Any]
    config: dict[str, Any]


def _chunk_title(title: object) -> bool:
    return isinstance(title, str) and bool(_CATALOG_TITLE.match(title) or _IMAGES_TITLE.match(title))


def parse_manifest(doc: dict[str, Any], ref: oci.Reference) -> list[dict[str, Any]]:
    """The layers of a data bundle's manifest (manifest.json first, then catalog_0..n), or UserError."""
    if doc.get("artifactType") != ARTIFACT_TYPE or (doc.get("config") or {}).get("mediaType") != CONFIG_TYPE:
        raise UserError(f"{ref} is not a pitlane data bundle (artifactType {doc.get('artifactType')!r})")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise UserError(f"{ref}: a data bundle has layers; this one has none")
    titles = []
    for i, d in enumerate(layers):
        title = (d.get("annotations") or {}).get(TITLE) if isinstance(d, dict) else None
        want = MANIFEST_LAYER_TYPE if i == 0 else CHUNK_TYPE
        ok_title = title == MANIFEST if i == 0 else _chunk_title(title)
        if not ok_title or d.get("mediaType") != want:
            raise UserError(
                f"{ref}: unexpected layer {i}: {title!r} ({d.get('mediaType') if isinstance(d, dict) else d})"
            )
        oci.check_digest(str(d.get("digest")))
        titles.append(title)
    if len(set(titles)) != len(titles):
        raise UserError(f"{ref}: a layer title appears twice: {titles}")
    return layers


def parse_config(data: bytes, layers: list[dict[str, Any]], ref: oci.Reference) -> dict[str, Any]:
    try:
        config = json.loads(data)
    except ValueError:
        raise UserError(f"{ref}: the data bundle's config is not JSON") from None
    if not isinstance(config, dict) or config.get("schema") != SCHEMA:
        raise UserError(
            f"{ref}: config schema {config.get('schema') if isinstance(config, dict) else None!r}, this pitlane reads {SCHEMA}"
        )
    listed = [(c.get("title"), c.get("digest")) for c in config.get("chunks") or [] if isinstance(c, dict)]
    actual = [((d.get("annotations") or {}).get(TITLE), d.get("digest")) for d in layers[1:]]
    if listed != actual:
        raise UserError(f"{ref}: the config's chunks do not match the manifest's layers")
    return config


def fetch(client: oci.Client, ref: oci.Reference) -> Remote:
    """Manifest (checked against the digest) and config (checked against the manifest) of a data bundle."""
    digest = ref.digest or client.resolve(ref.repository, ref.ref)
    ref = ref.with_digest(digest)
    m = client.get_manifest(ref.repository, digest)
    doc = m.json()
    layers = parse_manifest(doc, ref)
    cdigest = oci.check_digest(str((doc.get("config") or {}).get("digest")))
    config = parse_config(client.pull_blob(ref.repository, cdigest, MAX_CONFIG_BYTES), layers, ref)
    return Remote(ref, doc, config)


def _chunk_files(data: bytes, title: str, ref: oci.Reference) -> Iterator[tuple[str, bytes]]:
    """The (name, bytes) in a chunk: a catalog chunk holds its catalog and .catalog_manifest, an image chunk
    plain images/ files; anything else (a link, a path, a duplicate, too much) refuses the bundle."""
    images = _IMAGES_TITLE.match(title)
    allowed = set() if images else {f"{title}.catalog", f"{title}.catalog_manifest"}
    seen: set[str] = set()
    expanded = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                name = member.name
                image = (
                    bool(images)
                    and name.startswith(f"{IMAGES}/")
                    and bool(_IMAGE_NAME.match(name[len(IMAGES) + 1 :]))
                )
                if not member.isreg() or name in seen or not (name in allowed or image):
                    raise UserError(f"{ref}: chunk {title} holds {name!r}, which a tub chunk may not hold")
                expanded += member.size
                if expanded > MAX_EXPANDED_BYTES:
                    raise UserError(
                        f"{ref}: chunk {title} unpacks to more than {MAX_EXPANDED_BYTES >> 20} MB"
                    )
                seen.add(name)
                f = tar.extractfile(member)
                yield name, f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{ref}: chunk {title} is not a readable tar.gz: {exc}") from None


def pull_tub(client: oci.Client, ref: oci.Reference, out: str | Path) -> Remote:
    """Rebuild the tub at `out` (must not exist, or be an empty folder), every blob checked against its
    digest; written to a temporary folder beside it and renamed into place only when complete."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder; choose a new --out")
    remote = fetch(client, ref)
    repo, layers = remote.ref.repository, remote.manifest["layers"]
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (work / IMAGES).mkdir()
        manifest = client.pull_blob(repo, layers[0]["digest"], MAX_CONFIG_BYTES * 16)
        (work / MANIFEST).write_bytes(manifest)
        for d in layers[1:]:
            title = d["annotations"][TITLE]
            for name, data in _chunk_files(
                client.pull_blob(repo, d["digest"], MAX_CHUNK_BYTES), title, remote.ref
            ):
                (work / name).write_bytes(data)
        raw = read_raw_tub(work)
        titles = [d["annotations"][TITLE] for d in layers[1:]]
        expected = [f"{t}.catalog" for t in titles if _CATALOG_TITLE.match(t)]
        if raw.manifest_error or raw.catalog_paths != expected:
            raise UserError(
                f"{remote.ref}: its manifest.json does not list its chunks ({raw.manifest_error or raw.catalog_paths})"
            )
        origin = {
            "ref": str(remote.ref),
            **{k: remote.config.get(k) for k in ("car", "user", "session", "records", "model")},
        }
        (work / ORIGIN_FILE).write_text(json.dumps(origin, indent=2) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return remote


# --- listing -------------------------------------------------------------------------------------------------
def list_bundles(
    client: oci.Client, *, car: str | None = None, since: float | None = None, model: str | None = None
) -> list[Remote]:
    """Data bundles in the registry (each tagged one once), oldest first; filtered by car, by the time
    their last record was made (>= since, unix s) and by the model digest that drove."""
    repos = (
        [f"{DATA_PREFIX}{protocol.check_car_name(car)}"]
        if car
        else [r for r in client.catalog() if r.startswith(DATA_PREFIX)]
    )
    found: dict[str, Remote] = {}
    for repo in repos:
        for tag in client.tags(repo):
            try:
                remote = fetch(client, oci.Reference(client.registry, repo, tag))
            except UserError:
                continue  # not a data bundle (or a broken push): ls shows bundles only
            found.setdefault(str(remote.ref), remote)
    out = []
    for remote in found.values():
        c = remote.config
        if car and c.get("car") not in (car, None):
            continue
        if since is not None and not (isinstance(c.get("end"), int | float) and c["end"] >= since):
            continue
        if model and c.get("model") != model:
            continue
        out.append(remote)
    return sorted(out, key=lambda r: (r.config.get("start") or 0.0, str(r.ref)))
