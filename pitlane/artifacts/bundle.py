"""The model bundle: one OCI image manifest per model, with a pitlane `artifactType`.

  config  application/vnd.pitlane.model.config.v1+json  versioned metadata (see `bundle_config`)
  layers  one per file, named by `org.opencontainers.image.title`:
          pilot.tflite (required) | pilot.keras (optional) | gate.json (the gate report) | canary.npz

The canary frames are a few frames of the training data (or of the twin when the tubs are gone) with the
outputs the model gave at packing time; the car replays them before it trusts a model (see
`pitlane.car.model_manager`). Everything is addressed by digest: a reference prints as `repo@sha256:...`.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pitlane import __version__
from pitlane import gate_report as gates  # (pack's `gate_report` argument is a path)
from pitlane.artifacts import oci
from pitlane.artifacts.cache import Source
from pitlane.artifacts.trust import sign_release
from pitlane.errors import BadInput, IntegrityError, Refused
from pitlane.pilots.model import ModelPilot
from pitlane.provenance import file_digest, git_commit, run_record_path

ARTIFACT_TYPE = "application/vnd.pitlane.model.v1"
CONFIG_TYPE = "application/vnd.pitlane.model.config.v1+json"
TFLITE_TYPE = "application/vnd.pitlane.model.tflite"
KERAS_TYPE = "application/vnd.pitlane.model.keras"
GATE_TYPE = "application/vnd.pitlane.gate-report.v1+json"
CANARY_TYPE = "application/vnd.pitlane.canary.v1+npz"
SCHEMA = "pitlane.model-bundle/1"
TITLE = "org.opencontainers.image.title"
TFLITE_NAME, KERAS_NAME, GATE_NAME, CANARY_NAME = "pilot.tflite", "pilot.keras", "gate.json", "canary.npz"
KINDS = {TFLITE_NAME: TFLITE_TYPE, KERAS_NAME: KERAS_TYPE, GATE_NAME: GATE_TYPE, CANARY_NAME: CANARY_TYPE}
CANARY_FRAMES = 8
MAX_CONFIG_BYTES = 1 << 20  # [B]
MAX_LAYER_BYTES = 512 << 20  # [B] far above a donkeycar model; stops a hostile registry filling the disk
MAX_GATE_BYTES = 8 << 20  # [B] a gate report with many runs' traces summed up
MAX_MANIFEST_BYTES = 64 << 10  # [B] a bundle manifest is 4 descriptors: ~1.5 KiB


@dataclass(frozen=True)
class Bundle:
    """A bundle in memory: its config bytes and (title, media type, bytes) per layer."""

    config: bytes
    layers: tuple[tuple[str, str, bytes], ...]

    def manifest(self) -> bytes:
        doc = {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": oci.descriptor(CONFIG_TYPE, self.config),
            "layers": [oci.descriptor(mt, data, {TITLE: title}) for title, mt, data in self.layers],
        }
        return oci.canonical_json(doc)

    @property
    def digest(self) -> str:
        return oci.sha256_digest(self.manifest())

    def replaced(self, title: str | None = None, data: bytes = b"", **config: Any) -> Bundle:
        """A copy with file `title` replaced by `data` (its digests updated) and/or config keys changed:
        for release tooling that re-serials a bundle, and for showing what a tampered copy looks like."""
        doc = json.loads(self.config)
        doc.update(config)
        layers = self.layers
        if title is not None:
            layers = tuple((t, mt, data if t == title else d) for t, mt, d in self.layers)
            doc["files"][title] = oci.sha256_digest(data)
            if title == TFLITE_NAME:
                doc["model_digest"] = doc["files"][title]
        return Bundle(oci.canonical_json(doc), layers)


# --- packing ---------------------------------------------------------------------------------------
def default_gate_report(model: Path) -> Path | None:
    """The recipe's layout: out/recipe/model/pilot.tflite is gated in out/recipe/gate/gate.json."""
    for candidate in (model.parent.parent / "gate" / "gate.json", model.parent / "gate.json"):
        if candidate.is_file():
            return candidate
    return None


def read_gate_report(path: Path) -> tuple[gates.GateReport, bytes]:
    """(the report, its exact bytes): the bytes become the bundle's gate.json layer."""
    return gates.read(path)


def tub_frames(tubs: list[Path], shape: tuple[int, ...], count: int) -> np.ndarray | None:
    """`count` frames spread over the first tub that still exists and matches `shape`, else None."""
    from PIL import Image

    for tub in tubs:
        images = sorted((Path(tub) / "images").glob("*_cam_image_array_*"))
        if len(images) < count:
            continue
        picks = [images[i] for i in np.linspace(0, len(images) - 1, count).round().astype(int)]
        frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in picks])
        if tuple(frames.shape[1:]) == tuple(shape):
            return frames
    return None


def twin_frames(count: int, scene: str = "generated_track") -> np.ndarray:
    """Frames of the twin's camera along the start of a scene (when the training tubs are not at hand)."""
    from pitlane.twin.sim import Sim  # lazily: the car (no OpenCV there) reads bundles, it never packs them
    from pitlane.twin.vehicle import Control

    sim = Sim(scene, seed=0)
    frames = []
    for _ in range(count):
        for _ in range(4):
            sim.step(Control(steering=0.0, throttle=0.4))
        frames.append(sim.render())
    return np.stack(frames)


def canary_npz(frames: np.ndarray) -> bytes:
    """The canary frames layer: frames only (compressed), so bundles of models trained on the same data share
    it and a model-only update does not move it again; the recorded outputs live in the config."""
    buf = io.BytesIO()
    np.savez_compressed(buf, frames=frames.astype(np.uint8))
    return buf.getvalue()


def read_canary(data: bytes, outputs: object) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 N x H x W x D, recorded outputs float32 N x 2); BadInput if malformed."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            frames = z["frames"]
        recorded = np.asarray(outputs, dtype=np.float32)
    except Exception as exc:  # numpy raises several kinds for a bad archive
        raise BadInput(f"canary frames are unreadable: {type(exc).__name__}: {exc}") from None
    if frames.ndim != 4 or frames.dtype != np.uint8 or recorded.shape != (len(frames), 2):
        raise BadInput(
            f"canary frames have shapes {frames.shape} / {recorded.shape}; expected N x H x W x D / N x 2"
        )
    return frames, recorded


def pack(
    model: Path,
    *,
    gate_report: Path | None,
    serial: int,
    keras: Path | None = None,
    canary_count: int = CANARY_FRAMES,
    created: str | None = None,
) -> Bundle:
    """Read the model, its run record and gate report; run the canary frames; return the bundle."""
    model = Path(model)
    if model.suffix.lower() != ".tflite":
        raise BadInput(f"{model}: a bundle carries a .tflite model (the car's runtime); got {model.suffix!r}")
    if not model.is_file():
        raise BadInput(f"model {model} does not exist")
    pilot = ModelPilot(model)  # refuses files that are not donkeycar models
    record_path = run_record_path(model)
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    if keras is None and record and record.get("model_path") and Path(record["model_path"]).is_file():
        keras = Path(record["model_path"])
    layers: list[tuple[str, str, bytes]] = [(TFLITE_NAME, TFLITE_TYPE, model.read_bytes())]
    if keras is not None:
        layers.append((KERAS_NAME, KERAS_TYPE, Path(keras).read_bytes()))
    gate = None
    if gate_report is not None:
        report, report_bytes = read_gate_report(gate_report)
        gate = report.summary(report_bytes)
        layers.append((GATE_NAME, GATE_TYPE, report_bytes))

    tubs = [Path(t["path"]) for t in (record or {}).get("tubs", []) if isinstance(t, dict) and "path" in t]
    frames = tub_frames(tubs, pilot.input_shape, canary_count)
    source = "training tubs"
    if frames is None:
        frames, source = twin_frames(canary_count), "twin:generated_track"
        if tuple(frames.shape[1:]) != pilot.input_shape:
            raise BadInput(
                f"{model} takes {pilot.input_shape} images and its training tubs are gone: no canary frames"
            )
    outputs = np.array([pilot.run(f) for f in frames], dtype=np.float32)
    if not np.isfinite(outputs).all():
        raise BadInput(f"{model} gives non-finite outputs on its canary frames: it cannot drive")
    layers.append((CANARY_NAME, CANARY_TYPE, canary_npz(frames)))
    commit = (record or {}).get("git_commit") or git_commit()[0]
    config = {
        "schema": SCHEMA,
        "model_type": pilot.model_type,
        "input_shape": list(pilot.input_shape),
        "runtimes": ["tflite"] + (["keras"] if keras is not None else []),
        "files": {title: oci.sha256_digest(data) for title, _, data in layers},
        "model_digest": file_digest(model),
        "training": None
        if record is None
        else {
            "data_digest": record.get("data_digest"),
            "tubs": record.get("tubs"),
            "run_record": record,
        },
        "gate": gate,
        "canary": {"frames": int(len(frames)), "source": source, "outputs": outputs.round(6).tolist()},
        "git_commit": commit,
        "serial": int(serial),
        "created": created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "pitlane_version": __version__,
    }
    frame_stats = ((record or {}).get("extra") or {}).get("frame_stats")
    if frame_stats:  # the training frames' statistics: the car's baseline for its drift score
        config["frame_stats"] = frame_stats
    pilot.shutdown()
    return Bundle(oci.canonical_json(config), tuple(layers))


# --- registry ---------------------------------------------------------------------------------------
def push(client: oci.Client, bundle: Bundle, ref: oci.Reference, tags: tuple[str, ...] = ()) -> oci.Reference:
    """Upload the blobs the registry lacks, then the manifest under each tag; returns `repo@sha256:...`."""
    client.push_blob(ref.repository, bundle.config)
    for _, _, data in bundle.layers:
        client.push_blob(ref.repository, data)
    manifest = bundle.manifest()
    digest = oci.sha256_digest(manifest)
    for tag in tags or (digest,):
        client.push_manifest(ref.repository, manifest, tag)
    return ref.with_digest(digest)


@dataclass(frozen=True)
class Remote:
    """A bundle's manifest and config as read (and checked) from the registry; layers are fetched on demand."""

    ref: oci.Reference  # with its digest
    manifest: dict[str, Any]
    config: dict[str, Any]
    manifest_bytes: bytes
    config_bytes: bytes

    def layer(self, title: str) -> dict[str, Any] | None:
        for d in self.manifest.get("layers") or []:
            if (d.get("annotations") or {}).get(TITLE) == title:
                return d
        return None

    @property
    def serial(self) -> int:
        return int(self.config["serial"])


def _size(d: dict[str, Any], limit: int, what: str) -> int:
    size = d.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= limit:
        raise BadInput(f"{what}: size {size!r} is not a number of bytes up to {limit}")
    return size


def parse_manifest(manifest: oci.Manifest, ref: oci.Reference) -> dict[str, Any]:
    """The manifest as JSON, refused unless it is a pitlane model bundle of a known shape (every
    descriptor with a sha256 digest and a size within this pitlane's limits)."""
    doc = manifest.json()
    config = doc.get("config")
    if (
        doc.get("artifactType") != ARTIFACT_TYPE
        or not isinstance(config, dict)
        or config.get("mediaType") != CONFIG_TYPE
    ):
        raise BadInput(f"{ref} is not a pitlane model bundle (artifactType {doc.get('artifactType')!r})")
    oci.check_digest(str(config.get("digest")))
    _size(config, MAX_CONFIG_BYTES, f"{ref}: the config")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise BadInput(f"{ref}: a model bundle has layers; this one has none")
    titles = []
    for d in layers:
        title = (d.get("annotations") or {}).get(TITLE) if isinstance(d, dict) else None
        if title not in KINDS or KINDS[title] != d.get("mediaType"):
            raise BadInput(
                f"{ref}: unexpected layer {title!r} ({d.get('mediaType') if isinstance(d, dict) else d})"
            )
        oci.check_digest(str(d.get("digest")))
        _size(d, MAX_GATE_BYTES if title == GATE_NAME else MAX_LAYER_BYTES, f"{ref}: layer {title}")
        titles.append(title)
    if TFLITE_NAME not in titles or len(set(titles)) != len(titles):
        raise BadInput(f"{ref}: a model bundle holds exactly one {TFLITE_NAME}; layers are {titles}")
    return doc


def parse_config(data: bytes, manifest: dict[str, Any], ref: oci.Reference) -> dict[str, Any]:
    try:
        config = json.loads(data)
    except ValueError:
        raise BadInput(f"{ref}: the bundle's config is not JSON") from None
    if not isinstance(config, dict) or config.get("schema") != SCHEMA:
        raise BadInput(
            f"{ref}: config schema {config.get('schema') if isinstance(config, dict) else None!r}, "
            f"this pitlane reads {SCHEMA}"
        )
    serial = config.get("serial")
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        raise BadInput(f"{ref}: release serial {serial!r} is not a non-negative integer")
    files = config.get("files") or {}
    for d in manifest["layers"]:
        title = d["annotations"][TITLE]
        if files.get(title) != d["digest"]:
            raise BadInput(
                f"{ref}: the config lists {title} as {files.get(title)}, the manifest as {d['digest']}"
            )
    return config


def resolve(client: oci.Client | None, ref: oci.Reference) -> oci.Reference:
    """`ref` with its digest (a tag is asked of the registry: offline, only digests are known)."""
    if ref.digest:
        return ref
    if client is None:
        raise BadInput(f"{ref} is a tag: without a registry only REGISTRY/REPO@sha256:... can be read")
    return ref.with_digest(client.resolve(ref.repository, ref.ref))


def read_manifest(src: Source, ref: oci.Reference) -> tuple[oci.Manifest, dict[str, Any]]:
    """The bundle manifest `ref` names (by digest): its exact bytes and its checked JSON."""
    assert ref.digest is not None
    m = src.manifest(ref.repository, ref.digest, MAX_MANIFEST_BYTES)
    return m, parse_manifest(m, ref)


def read_config(src: Source, ref: oci.Reference, manifest: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The config the manifest names: its exact bytes (checked, bounded by its descriptor) and its JSON."""
    desc = manifest["config"]
    data = src.blob(ref.repository, desc["digest"], desc["size"])
    return data, parse_config(data, manifest, ref)


def fetch(client: oci.Client, ref: oci.Reference) -> Remote:
    """Manifest (checked against the digest) and config (checked against the manifest) of a bundle: its
    metadata, no signature checked (`pitlane.artifacts.fetch.fetch_verified` checks everything)."""
    ref = resolve(client, ref)
    src = Source(client)
    m, doc = read_manifest(src, ref)
    cdata, config = read_config(src, ref, doc)
    return Remote(ref, doc, config, m.data, cdata)


def list_bundles(client: oci.Client, ref: oci.Reference) -> list[tuple[str, Remote]]:
    """(tag, bundle) for each tag of the repository that names a model bundle (signatures skipped)."""
    out = []
    for tag in client.tags(ref.repository):
        if tag.endswith((".sig", ".att")):
            continue
        try:
            out.append((tag, fetch(client, ref.with_tag(tag))))
        except (BadInput, IntegrityError):
            continue  # not a bundle (an image, a broken push, a tag just deleted): ls shows bundles only
    return out


def next_serial(client: oci.Client, ref: oci.Reference) -> int:
    """One more than the highest release serial among the repository's tagged bundles (1 for the first)."""
    return 1 + max((remote.serial for _, remote in list_bundles(client, ref)), default=0)


# --- release rules -----------------------------------------------------------------------------------
def passing_gate_report(client: oci.Client, remote: Remote) -> dict[str, Any]:
    """The bundle's gate report (as JSON, to attest), if it passed for exactly this bundle's .tflite;
    Refused (or BadInput for a report that is not one) says why not."""
    desc = remote.layer(GATE_NAME)
    if desc is None:
        raise Refused(
            f"{remote.ref} carries no gate report: gate the model (`pitlane gate --model M --out DIR`), "
            "then push it with --gate DIR/gate.json"
        )
    data = client.pull_blob(remote.ref.repository, desc["digest"], size=desc["size"])
    report = gates.loads(data, f"{remote.ref}: its gate report")
    tflite = remote.config["files"][TFLITE_NAME]
    if not report.passed:
        raise Refused(f"{remote.ref}: the gate report's verdict is {report.verdict!r}, not 'pass'")
    if report.model_digest != tflite:
        raise Refused(
            f"{remote.ref}: the gate report is for model {report.model_digest}, "
            f"not this bundle's {TFLITE_NAME} {tflite}"
        )
    return json.loads(data)


def sign_bundle(client: oci.Client, ref: oci.Reference, key) -> tuple[Remote, oci.Reference, oci.Reference]:
    """Sign a gated bundle and attest its gate report; (bundle, .sig reference, .att reference)."""
    remote = fetch(client, ref)
    report = passing_gate_report(client, remote)
    sig, att = sign_release(client, remote.ref, key, serial=remote.serial, report=report)
    return remote, sig, att
