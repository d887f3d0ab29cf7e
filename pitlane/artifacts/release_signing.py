"""Sign a model bundle as a release: the signer's serial in the signature, a gate run's report attested.

What a car trusts is what the release key signed, so nothing the pusher wrote is signed on their word:
- the release serial is the signer's (`pitlane.dev/serial` in the simple-signing payload's `optional`,
  and in the gate attestation); a bundle whose config says another serial is re-pushed with the assigned
  one first (same layers, a new manifest digest), so config and signature always agree;
- the gate attestation (predicate `attest.GATE_PREDICATE`) is built from a gate report the CALLER hands
  over (the pipeline's own gate run, checked by digest), never from the bundle's gate.json layer, which
  stays informational. The predicate is that report plus what the release adds: the bundle digest, the
  serial, the report's digest, the pitlane version and the tools image that signed.

Signing twice is safe: a signature by this key for this serial, or an attestation of this key, is not
added again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from pitlane import __version__
from pitlane import gate_report as gates
from pitlane.artifacts import attest, bundle, oci, signing
from pitlane.artifacts.trust import (
    SERIAL_ANNOTATION,  # simple-signing `optional`: {"pitlane.dev/serial": "<int>"}
)
from pitlane.errors import BadInput, IntegrityError, NotFound, Refused, SignatureError


@dataclass(frozen=True)
class SignedRelease:
    """A signed bundle: where it is, its serial, its signature and attestation tags, what was new."""

    ref: oci.Reference  # the signed bundle (the candidate, or its copy carrying the assigned serial)
    serial: int
    signature: oci.Reference
    attestation: oci.Reference
    signed_now: bool
    attested_now: bool


def serial_of(payload: dict[str, Any]) -> int | None:
    """The release serial a verified simple-signing payload carries, or None (pure)."""
    optional = payload.get("optional")
    value = optional.get(SERIAL_ANNOTATION) if isinstance(optional, dict) else None
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def check_report(report_bytes: bytes, remote: bundle.Remote) -> gates.GateReport:
    """The gate report, if it passed for exactly this bundle's .tflite; Refused says why not."""
    report = gates.loads(report_bytes, "the gate report")
    tflite = remote.config["files"][bundle.TFLITE_NAME]
    if remote.config.get("model_digest") != tflite:
        raise Refused(f"{remote.ref}: its config's model_digest is not its {bundle.TFLITE_NAME}'s digest")
    if not report.passed:
        raise Refused(f"the gate report's verdict is {report.verdict!r}, not 'pass': nothing is signed")
    if report.model_digest != tflite:
        raise Refused(
            f"the gate report is for model {report.model_digest}, not {remote.ref}'s {bundle.TFLITE_NAME} "
            f"{tflite}: gate this bundle's model"
        )
    return report


def gate_predicate(report_bytes: bytes, bundle_digest: str, serial: int, tools_image: str) -> dict[str, Any]:
    """The model-gate attestation: the gate report as the run wrote it, and what the release adds (pure)."""
    doc = json.loads(report_bytes)
    return (
        {"policy": None}
        | doc
        | {  # the policy the run held the model to (None: the report names none)
            "bundle_digest": bundle_digest,
            "serial": serial,
            "gate_report_digest": "sha256:" + hashlib.sha256(report_bytes).hexdigest(),
            "pitlane_version": __version__,
            "tools_image": tools_image,
        }
    )


def with_serial(client: oci.Client, remote: bundle.Remote, serial: int) -> oci.Reference:
    """The bundle carrying `serial` in its config: `remote` itself, or a copy pushed (tag serial-N)."""
    if remote.serial == serial:
        return remote.ref
    config = json.loads(remote.config_bytes) | {"serial": serial}
    data = oci.canonical_json(config)
    client.push_blob(remote.ref.repository, data)
    manifest = json.loads(remote.manifest_bytes)
    manifest["config"] = oci.descriptor(bundle.CONFIG_TYPE, data)
    payload = oci.canonical_json(manifest)
    return remote.ref.with_digest(client.push_manifest(remote.ref.repository, payload, f"serial-{serial}"))


def signed_serial(client: oci.Client, ref: oci.Reference, key: ec.EllipticCurvePublicKey) -> int | None:
    """The serial of `ref`'s signature by `key` (None: unsigned by it, or signed without a serial)."""
    try:
        return serial_of(signing.verify(client, ref, key).payload)
    except (SignatureError, NotFound, IntegrityError, BadInput):
        return None


def highest_signed_serial(client: oci.Client, repo: oci.Reference, key: ec.EllipticCurvePublicKey) -> int:
    """The highest serial any bundle of `repo` was signed with by `key` (0 when none): the registry's
    own record of what was released, whatever else is lost."""
    highest = 0
    for tag in client.tags(repo.repository):
        digest = tag[: -len(".sig")].replace("-", ":", 1) if tag.endswith(".sig") else ""
        if oci.is_digest(digest):
            highest = max(highest, signed_serial(client, repo.with_digest(digest), key) or 0)
    return highest


def sign_release(
    client: oci.Client,
    ref: oci.Reference,
    key: ec.EllipticCurvePrivateKey,
    report_bytes: bytes,
    serial: int,
    tools_image: str = "",
) -> SignedRelease:
    """Sign the bundle `ref` as release `serial` and attest the given gate report (see the module)."""
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 1:
        raise BadInput(f"release serial {serial!r} must be an integer >= 1")
    candidate = bundle.fetch(client, ref)
    check_report(report_bytes, candidate)
    signed = with_serial(client, candidate, serial)
    assert signed.digest is not None
    public = key.public_key()
    sig_tag = signed.with_tag(signing.suffix_tag(signed.digest, "sig"))
    signed_now = signed_serial(client, signed, public) != serial
    if signed_now:
        sig_tag = signing.sign(client, signed, key, {SERIAL_ANNOTATION: str(serial)})
    att_tag = signed.with_tag(signing.suffix_tag(signed.digest, "att"))
    try:
        attest.verify_attestation(client, signed, public, attest.GATE_PREDICATE)
        attested_now = False
    except SignatureError:
        predicate = gate_predicate(report_bytes, signed.digest, serial, tools_image)
        att_tag = attest.attest(client, signed, key, attest.GATE_PREDICATE, predicate)
        attested_now = True
    return SignedRelease(signed, serial, sig_tag, att_tag, signed_now, attested_now)
