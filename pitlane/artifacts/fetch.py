"""One verified fetch of a model bundle, for everyone who reads one: `pitlane model pull|verify`, the demo,
the car's model manager and the car image's self-check.

`fetch_verified` gets, in this order, and checks each before the next:
  1. the manifest: its bytes must hash to the digest asked for, at most `bundle.MAX_MANIFEST_BYTES`, and it
     must be a pitlane model bundle of a known shape (every descriptor sized within the limits);
  2. the cosign signature (`sha256-<hex>.sig`), verified with the key, naming exactly that digest;
  3. the gate attestation (`sha256-<hex>.att`) when there is one, verified with the key; its predicate is
     read as a gate report (`pitlane.gate_report`) and returned, so a caller can require a passing gate for
     exactly this bundle's model digest;
  4. the config and the layers, each checked against its digest and bounded by its descriptor's size.
Each piece comes from the cache when it is there and intact, else from the registry (then cached, streamed
to disk); without a client, from the cache alone (a car starting without network). `deadline_s` bounds the
whole fetch in wall-clock time (a registry that trickles bytes cannot hold it longer). What a car further
requires of a verified bundle (the signed serial, a passing gate attestation for exactly it) is
`pitlane.artifacts.trust.check_release`. Failures raise by cause
(`pitlane.errors`): Unavailable (retry), IntegrityError, SignatureError, BadInput, NotFound.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from pitlane import gate_report
from pitlane.artifacts import attest, bundle, oci, signing
from pitlane.artifacts.cache import BlobCache, Source
from pitlane.errors import BadInput, IntegrityError, SignatureError, Unavailable

BUNDLE_JSON = "bundle.json"  # the config, as `pitlane model pull` writes it beside the files


@dataclass(frozen=True)
class VerifiedBundle:
    """A model bundle whose every byte was checked: by digest always, by signature when a key was given."""

    ref: oci.Reference  # with its digest
    manifest: dict[str, Any]
    manifest_bytes: bytes
    config: dict[str, Any]
    config_bytes: bytes
    layers: dict[str, bytes]  # title -> checked bytes (the titles asked for that the bundle has)
    signature: str | None  # digest of the signature manifest that verified; None: no key, not checked
    gate: gate_report.GateReport | None  # the verified gate attestation's report; None: see `gate_note`
    gate_note: str = ""  # why `gate` is None ("" when it is not)
    signed_payload: dict[str, Any] | None = None  # the verified simple-signing payload (None: no key)
    gate_predicate: dict[str, Any] | None = None  # the verified gate attestation's whole predicate

    @property
    def config_serial(self) -> int:
        """The serial the bundle's config states (the pusher's word; `trust` compares it with the signed one)."""
        return int(self.config["serial"])

    @property
    def serial(self) -> int:
        return self.config_serial

    @property
    def model_digest(self) -> str:
        """The digest of the bundle's .tflite (what a gate report must name)."""
        return str(self.config["files"][bundle.TFLITE_NAME])

    def layer(self, title: str) -> dict[str, Any] | None:
        return self.remote().layer(title)

    def remote(self) -> bundle.Remote:
        return bundle.Remote(self.ref, self.manifest, self.config, self.manifest_bytes, self.config_bytes)

    def write(self, dest: Path) -> dict[str, Path]:
        """Each layer as `dest/<title>` and the config as `dest/bundle.json` (atomic writes); title -> path."""
        paths = {}
        for title, data in self.layers.items():  # titles are bundle.KINDS' names: never a path
            paths[title] = Path(dest) / title
            oci.write_atomic(paths[title], data)
        oci.write_atomic(Path(dest) / BUNDLE_JSON, json.dumps(self.config, indent=2).encode() + b"\n")
        return paths


def fetch_verified(
    ref: oci.Reference,
    key: ec.EllipticCurvePublicKey | None,
    cache: BlobCache | None,
    client: oci.Client | None = None,
    *,
    titles: Collection[str] | None = None,
    deadline_s: float | None = None,
) -> VerifiedBundle:
    """The bundle `ref` names, every piece checked (see the module's docstring).

    key:    the release's public key; None checks digests only (`pitlane model pull` of a candidate that
            is not signed yet): no signature, no attestation.
    cache:  where checked bytes are kept and looked up first; None: the registry only.
    client: the registry; None: the cache only (offline).
    titles: the layers to fetch (default: all of them).
    deadline_s: [s] wall-clock limit of the whole fetch from the registry (Unavailable after it)."""
    if client is None and cache is None:
        raise ValueError("fetch_verified needs a registry client, a cache, or both")
    if client is None or deadline_s is None:
        return _fetch(ref, key, Source(client, cache), titles)
    with client.deadline(deadline_s):
        return _fetch(ref, key, Source(client, cache), titles)


def _fetch(
    ref: oci.Reference, key: ec.EllipticCurvePublicKey | None, src: Source, titles: Collection[str] | None
) -> VerifiedBundle:
    client = src.client
    ref = bundle.resolve(client, ref)
    assert ref.digest is not None
    m, manifest = bundle.read_manifest(src, ref)
    signature, payload, gate, predicate, note = None, None, None, None, "not checked (no key)"
    if key is not None:
        verified = signing.verify(src, ref, key)
        signature, payload = verified.digest, verified.payload
        gate, predicate, note = _gate(src, ref, key)
    config_bytes, config = bundle.read_config(src, ref, manifest)
    layers = {}
    for d in manifest["layers"]:
        title = d["annotations"][bundle.TITLE]
        if titles is None or title in titles:
            layers[title] = src.blob(ref.repository, d["digest"], d["size"])
    return VerifiedBundle(
        ref, manifest, m.data, config, config_bytes, layers, signature, gate, note, payload, predicate
    )


def _gate(
    src: Source, ref: oci.Reference, key: ec.EllipticCurvePublicKey
) -> tuple[gate_report.GateReport | None, dict[str, Any] | None, str]:
    """(the verified gate attestation's report, its predicate, "") or (None, None, why there is none)."""
    try:
        predicate, _ = attest.fetch_attestation(src, ref, key, attest.GATE_PREDICATE)
    except SignatureError as exc:
        return None, None, str(exc)
    except (Unavailable, IntegrityError) as exc:
        if src.online:
            raise
        return None, None, f"{ref}: its gate attestation is not in the cache ({exc})"
    try:
        return gate_report.parse(predicate, f"{ref}: the attested gate report"), predicate, ""
    except BadInput as exc:
        return None, None, str(exc)
