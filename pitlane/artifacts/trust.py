"""What a car requires of a model bundle beyond a valid signature: the release serial the pipeline signed,
and a gate attestation, signed by the same key, that passed for exactly this bundle.

The formats the release pipeline writes (issue 20):
- the signature's simple-signing payload carries `optional: {"pitlane.dev/serial": "<int>"}`: the serial
  the pipeline assigned. The bundle config's `serial` is the pusher's word; it must equal the signed one;
- the gate attestation (`attest.GATE_PREDICATE`, a DSSE envelope under the `.att` tag) holds a gate report
  (`pitlane.gate_report`) with at least `verdict`, `model_digest` (the .tflite's sha256, as the config's
  `model_digest`), `bundle_digest` (the manifest's) and `serial`.
The bundle's own `gate.json` layer and its config's `gate` summary are what the pusher wrote: never read
here. `check_release` applies the rules to a bundle `fetch_verified` checked (pure); `sign_release` is the
signing side the demo and the tests use (the release pipeline signs in its own step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec

from pitlane.artifacts import attest, oci, signing
from pitlane.errors import Refused, SignatureError
from pitlane.gate_report import GateReport

if TYPE_CHECKING:  # fetch imports bundle, which signs through this module
    from pitlane.artifacts.fetch import VerifiedBundle

SERIAL_ANNOTATION = "pitlane.dev/serial"  # in the signed payload's `optional`
RELEASE_IT = "release it through the pipeline (a tag), which gates, assigns the serial, signs and attests"


@dataclass(frozen=True)
class Release:
    """A bundle the release chain vouches for: its signed serial and its passing gate attestation."""

    serial: int  # the serial the pipeline signed
    gate: GateReport


def _serial(value: Any) -> int | None:
    """A release serial written as an int or its decimal string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def signed_serial(payload: dict[str, Any] | None, what: str) -> int:
    """The release serial a verified simple-signing payload carries; Refused when it has none."""
    optional = (payload or {}).get("optional")
    raw = optional.get(SERIAL_ANNOTATION) if isinstance(optional, dict) else None
    serial = _serial(raw)
    if serial is None:
        shown = "none" if raw is None else repr(raw)
        raise Refused(
            f"{what}: its signature carries no release serial ({SERIAL_ANNOTATION}: {shown}), so it was not "
            f"signed by the release pipeline; {RELEASE_IT}"
        )
    return serial


def check_release(got: VerifiedBundle) -> Release:
    """The signed serial and gate report of a bundle verified with a key, if the release chain vouches for
    it; else Refused (SignatureError when no gate attestation verifies) naming why and what to do."""
    what = str(got.ref)
    serial = signed_serial(got.signed_payload, what)
    if got.config_serial != serial:
        raise Refused(
            f"{what}: its config says release serial {got.config_serial} but its signature {serial}: a serial "
            f"the pipeline did not assign; {RELEASE_IT}"
        )
    gate, predicate = got.gate, got.gate_predicate or {}
    if gate is None:
        raise SignatureError(
            f"{what} has no gate attestation signed by this key ({got.gate_note}); the car runs only a "
            f"model the release gated: {RELEASE_IT} (a gate.json inside the bundle does not count)"
        )
    if not gate.passed:
        raise Refused(
            f"{what}: its gate attestation's verdict is {gate.verdict!r}: the model failed the gate; "
            "release one that passes"
        )
    if gate.model_digest != got.model_digest or got.config.get("model_digest") != got.model_digest:
        raise Refused(
            f"{what}: its gate attestation is for model {gate.model_digest}, not this bundle's "
            f"{got.model_digest}; {RELEASE_IT}"
        )
    if predicate.get("bundle_digest") != got.ref.digest:
        raise Refused(
            f"{what}: its gate attestation names bundle {predicate.get('bundle_digest')!r}, not this one; "
            f"{RELEASE_IT}"
        )
    if _serial(predicate.get("serial")) != serial:
        raise Refused(
            f"{what}: its gate attestation names release serial {predicate.get('serial')!r}, its signature "
            f"{serial}; {RELEASE_IT}"
        )
    return Release(serial, gate)


def gate_predicate(report: dict[str, Any], bundle_digest: str, serial: int) -> dict[str, Any]:
    """The gate attestation's predicate: the gate report as the gate wrote it, naming the bundle and serial."""
    return {**report, "bundle_digest": oci.check_digest(bundle_digest), "serial": int(serial)}


def sign_release(
    client: oci.Client,
    ref: oci.Reference,
    key: ec.EllipticCurvePrivateKey,
    *,
    serial: int,
    report: dict[str, Any],
) -> tuple[oci.Reference, oci.Reference]:
    """Sign `ref` (a bundle, by digest) with its release serial and attest `report` (a gate run's report)
    about it; (the signature's tag, the attestation's tag). The caller vouches for the report."""
    if not ref.digest:
        raise Refused(f"{ref}: sign a digest (REPO@sha256:...), never a tag that can move")
    sig = signing.sign(client, ref, key, {SERIAL_ANNOTATION: str(int(serial))})
    att = attest.attest(client, ref, key, attest.GATE_PREDICATE, gate_predicate(report, ref.digest, serial))
    return sig, att
