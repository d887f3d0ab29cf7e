"""Sign and attest what a release ships (images, and the pipeline's gate report on the model), once.

Signatures are cosign's key-based tag format and attestations in-toto DSSE envelopes, both from
pitlane.artifacts; this adds what a pipeline that may run twice for one tag needs: nothing is signed
or attested again when a valid one by the same key is already there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pitlane.artifacts import attest, oci, signing
from pitlane.errors import SignatureError, UserError
from pitlane.images.attest import PREDICATE_TYPE as SLSA_PROVENANCE

PREDICATES = {
    "release-gate": "https://pitlane.dev/attestations/release-gate/v1",  # the pipeline's own gate run
    "slsa-provenance": SLSA_PROVENANCE,  # what `pitlane images build` writes beside each image
}


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
