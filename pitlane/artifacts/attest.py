"""In-toto attestations in DSSE envelopes, stored as cosign attest does (the `sha256-<hex>.att` tag).

The statement names the signed manifest as its subject and carries a predicate (pitlane puts the model
gate's report there); the envelope's signature is ECDSA P-256 over DSSE's pre-authentication encoding
(PAE), so `cosign verify-attestation --key --insecure-ignore-tlog` and Tekton Chains' verifiers read it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from pitlane.artifacts import oci
from pitlane.artifacts.cache import Source
from pitlane.artifacts.signing import (
    MAX_SIGNATURE_MANIFEST_BYTES,
    append_layer,
    sign_bytes,
    signature_layers,
    suffix_tag,
    verify_bytes,
)
from pitlane.errors import BadInput, IntegrityError, NotFound, SignatureError

STATEMENT_TYPE = "https://in-toto.io/Statement/v0.1"  # what cosign attest writes
PAYLOAD_TYPE = "application/vnd.in-toto+json"
DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"
GATE_PREDICATE = "https://pitlane.dev/attestations/model-gate/v1"
MAX_ENVELOPE_BYTES = 8 << 20  # [B]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def statement(ref: oci.Reference, predicate_type: str, predicate: dict[str, Any]) -> bytes:
    assert ref.digest is not None
    return json.dumps(
        {
            "_type": STATEMENT_TYPE,
            "predicateType": predicate_type,
            "subject": [{"name": ref.name, "digest": {"sha256": ref.digest.split(":", 1)[1]}}],
            "predicate": predicate,
        },
        separators=(",", ":"),
    ).encode()


def envelope(payload: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    sig = base64.b64encode(sign_bytes(key, pae(PAYLOAD_TYPE, payload))).decode()
    doc = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": sig}],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def attest(
    client: oci.Client,
    ref: oci.Reference,
    key: ec.EllipticCurvePrivateKey,
    predicate_type: str,
    predicate: dict[str, Any],
) -> oci.Reference:
    """Attach a signed in-toto statement about `ref` (a digest) under its `.att` tag; returns that tag."""
    if not ref.digest:
        raise BadInput(f"{ref}: attest a digest (repo@sha256:...), never a tag")
    env = envelope(statement(ref, predicate_type, predicate), key)
    tag = suffix_tag(ref.digest, "att")
    desc = oci.descriptor(DSSE_TYPE, env, {"predicateType": predicate_type})
    append_layer(client, ref.repository, tag, env, desc)
    return ref.with_tag(tag)


def open_envelope(
    data: bytes, key: ec.EllipticCurvePublicKey, digest: str, predicate_type: str
) -> dict[str, Any] | None:
    """The predicate of a DSSE envelope signed by `key` about `digest` with `predicate_type`, else None (pure)."""
    try:
        env = json.loads(data)
        payload = base64.b64decode(env["payload"], validate=True)
        sigs = [base64.b64decode(s["sig"], validate=True) for s in env["signatures"]]
        if env["payloadType"] != PAYLOAD_TYPE:
            return None
    except (ValueError, KeyError, TypeError):
        return None
    if not any(verify_bytes(key, pae(PAYLOAD_TYPE, payload), s) for s in sigs):
        return None
    try:
        st = json.loads(payload)
        subjects = {"sha256:" + s["digest"]["sha256"] for s in st["subject"]}
    except (ValueError, KeyError, TypeError):
        return None
    if digest not in subjects or st.get("predicateType") != predicate_type:
        return None
    predicate = st.get("predicate")
    return predicate if isinstance(predicate, dict) else None


def fetch_attestation(
    source: oci.Client | Source, ref: oci.Reference, key: ec.EllipticCurvePublicKey, predicate_type: str
) -> tuple[dict[str, Any], oci.Manifest]:
    """(predicate, the `.att` manifest holding it) of the first attestation of `predicate_type` about `ref`
    that verifies with `key`, from the registry or, offline, the cache; SignatureError if there is none.

    With a `Source` holding a cache, the verified attestation is kept there (and found there offline)."""
    if not ref.digest:
        raise BadInput(f"{ref}: verify a digest (repo@sha256:...), never a tag")
    src = source if isinstance(source, Source) else Source(source)
    tag = suffix_tag(ref.digest, "att")
    m = src.tagged(ref.repository, tag, MAX_SIGNATURE_MANIFEST_BYTES)
    if m is None:
        where = "" if src.online else " in the cache"
        raise SignatureError(f"{ref} has no attestations{where} (no {ref.repository}:{tag})")
    for d in signature_layers(m, str(ref)):
        size = d.get("size")
        if (
            d.get("mediaType") != DSSE_TYPE
            or not oci.is_digest(str(d.get("digest")))
            or isinstance(size, bool)
            or not isinstance(size, int)
            or not 0 <= size <= MAX_ENVELOPE_BYTES
        ):
            continue
        try:
            data = src.blob(ref.repository, d["digest"], size)
        except (IntegrityError, NotFound):
            continue
        predicate = open_envelope(data, key, ref.digest, predicate_type)
        if predicate is not None:
            src.remember(tag, m)
            return predicate, m
    raise SignatureError(f"{ref}: no attestation of {predicate_type} verifies with this public key")


def verify_attestation(
    client: oci.Client | Source, ref: oci.Reference, key: ec.EllipticCurvePublicKey, predicate_type: str
) -> dict[str, Any]:
    """The predicate of a verified attestation of `predicate_type` about `ref`; SignatureError if none."""
    return fetch_attestation(client, ref, key, predicate_type)[0]
