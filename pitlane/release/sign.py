"""Sign and attest what a release ships (images with the image key; the model, with its gate report and
serial, with the model key), once.

Signatures are cosign's key-based tag format and attestations in-toto DSSE envelopes, both from
pitlane.artifacts; this adds what a pipeline that may run twice for one tag needs: nothing is signed
or attested again when a valid one by the same key is already there. The signing Tasks call these from
the pinned tools image; nothing here reads code or trusts a file from the tag's checkout: the gate report
is checked against the gate Task's digest, the policy against fetch-source's, the image against the
registry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pitlane.artifacts import attest, oci, release_signing, signing
from pitlane.errors import BadInput, IntegrityError, NotFound, Refused, SignatureError, UserError
from pitlane.evaluate.gate import GatePolicy
from pitlane.images.attest import PREDICATE_TYPE as SLSA_PROVENANCE
from pitlane.images.plan import SOURCE
from pitlane.release import serial
from pitlane.release.policy import effective_policy, floor

PREDICATES = {
    "release-gate": "https://pitlane.dev/attestations/release-gate/v1",  # the pipeline's own gate run
    "slsa-provenance": SLSA_PROVENANCE,  # what `pitlane images build` writes beside each image
}


BUILDER_ID = "https://github.com/pitlane-dev/pitlane/pipelines/pitlane-release"


def sign_once(ref_text: str, key_path: Path) -> tuple[str, bool]:
    """Sign `REPO@sha256:...` unless the key's signature is already there; (signature tag, signed now?)."""
    ref = oci.Reference.parse(ref_text)
    if not ref.digest:
        raise UserError(f"{ref_text}: sign a digest (REPO@sha256:...), never a tag")
    key = signing.load_private_key(key_path)
    client = oci.Client.for_ref(ref)
    try:
        signing.verify(client, ref, key.public_key())
        return str(ref.with_tag(signing.suffix_tag(ref.digest, "sig"))), False
    except SignatureError:
        pass
    return str(signing.sign(client, ref, key)), True


def attest_once(ref_text: str, key_path: Path, predicate_file: Path, predicate_type: str) -> tuple[str, bool]:
    """Attach a signed statement of `predicate_type` unless this key already attested one of that type.

    A gate report differs from run to run (wall time), so "the same predicate" would never match: the
    first attestation of a release stands, and running the tag again adds nothing.
    """
    ref = oci.Reference.parse(ref_text)
    if not ref.digest:
        raise UserError(f"{ref_text}: attest a digest (REPO@sha256:...), never a tag")
    uri = PREDICATES.get(predicate_type, predicate_type)
    try:
        predicate: dict[str, Any] = json.loads(Path(predicate_file).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"predicate {predicate_file} is not readable JSON: {exc}") from None
    key = signing.load_private_key(key_path)
    client = oci.Client.for_ref(ref)
    try:
        attest.verify_attestation(client, ref, key.public_key(), uri)
        return str(ref.with_tag(signing.suffix_tag(ref.digest, "att"))), False
    except SignatureError:
        pass
    return str(attest.attest(client, ref, key, uri, predicate)), True


# --- the signing Tasks: trusted code, the only place a key is opened -----------------------------------
def read_gate_report(path: Path, digest: str) -> bytes:
    """The gate report the gate Task produced: the file's bytes must hash to the digest the gate Task gave
    as its result (a file in the shared workspace is anyone's to rewrite; a Task's result is not)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(f"gate report {path} is unreadable: {exc.strerror or exc}") from None
    found = "sha256:" + hashlib.sha256(data).hexdigest()
    if found != digest:
        raise IntegrityError(
            f"gate report {path} is {found}, not {digest} as the gate Task produced it: "
            "something rewrote it in the workspace; nothing is signed"
        )
    return data


def check_gate_policy(report: bytes, policy_json: str) -> GatePolicy:
    """The policy the gate ran, if it is the release's effective policy (from fetch-source) and holds the
    pipeline's minimum; Refused otherwise."""
    try:
        ran = json.loads(report).get("policy")
        wanted = json.loads(policy_json)
    except (ValueError, AttributeError):
        raise BadInput("the gate report or the release's policy is not JSON") from None
    if oci.canonical_json(ran) != oci.canonical_json(wanted):
        raise Refused(
            "the gate ran another policy than the release's (fetch-source's result): nothing is signed"
        )
    return effective_policy(floor(), GatePolicy.from_dict(wanted, "the gate's policy"), "the gate run")


def sign_model(
    ref_text: str,
    key_path: Path,
    report: bytes,
    policy_json: str,
    remote: str,
    release: serial.Release,
    tools_image: str,
) -> release_signing.SignedRelease:
    """Sign the gated candidate as the next release: the gate report re-checked, the serial assigned here."""
    ref = oci.Reference.parse(ref_text)
    if not ref.digest:
        raise UserError(f"{ref_text}: sign a digest (REPO@sha256:...), never a tag")
    check_gate_policy(report, policy_json)
    key = signing.load_private_key(key_path)
    client = oci.Client.for_ref(ref)
    highest = release_signing.highest_signed_serial(client, ref, key.public_key())
    number = serial.assign(remote, release, highest)
    return release_signing.sign_release(client, ref, key, report, number, tools_image)


def pushed_image(url: str, digest: str) -> oci.Reference:
    """REPO@DIGEST from a build Task's IMAGE_URL (REPO:TAG) and IMAGE_DIGEST, once the registry holds it."""
    ref = oci.Reference.parse(url)
    oci.check_digest(digest)
    pinned = oci.Reference(ref.registry, ref.repository, None, digest)
    try:  # the manifest itself, its bytes checked against the digest (a HEAD would take the digest's word)
        oci.Client.for_ref(pinned).get_manifest(pinned.repository, digest)
    except NotFound:
        raise Refused(
            f"{pinned} was never pushed: the build's IMAGE_DIGEST names nothing; nothing is signed"
        ) from None
    return pinned


def image_provenance(build: dict[str, Any], ref: oci.Reference, commit: str) -> dict[str, Any]:
    """The SLSA provenance to attest for the pushed image `ref`: what the build reported (its base and
    Pipfile.lock digests), with the subject and the git commit set from what the pipeline itself knows
    (fetch-source's commit, the registry's digest), never from the build's word."""
    try:
        definition = build["buildDefinition"]
        deps = list(definition["resolvedDependencies"])
    except (KeyError, TypeError):
        raise BadInput("the build's provenance has no buildDefinition.resolvedDependencies") from None
    deps = [d for d in deps if not str(d.get("uri", "")).startswith("git+")]
    params = dict(definition.get("externalParameters") or {}, image=f"{ref.registry}/{ref.repository}")
    return dict(
        build,
        buildDefinition=dict(
            definition,
            externalParameters=params,
            resolvedDependencies=[{"uri": "git+" + SOURCE, "digest": {"gitCommit": commit}}, *deps],
        ),
        runDetails={"builder": {"id": BUILDER_ID}, "metadata": {"invocationId": str(ref)}},
    )
