"""In-toto DSSE attestations under the `.att` tag: verified by key, subject and predicate type."""

from __future__ import annotations

import base64
import json

import pytest

from pitlane.artifacts import attest, oci, signing
from pitlane.errors import SignatureError


def test_attest_and_verify(registry, keys, push_thing):
    key, pub, other = keys
    client = oci.Client(registry.host)
    ref = push_thing(client, "t/attest", b"model")
    att = attest.attest(client, ref, key, attest.GATE_PREDICATE, {"verdict": "pass"})
    assert att.tag == signing.suffix_tag(ref.digest, "att")
    (layer,) = client.get_manifest(ref.repository, att.tag).json()["layers"]
    env = json.loads(client.pull_blob(ref.repository, layer["digest"]))
    statement = json.loads(base64.b64decode(env["payload"]))
    assert env["payloadType"] == "application/vnd.in-toto+json"
    assert statement["subject"][0]["digest"]["sha256"] == ref.digest.split(":")[1]
    assert attest.verify_attestation(client, ref, pub, attest.GATE_PREDICATE) == {"verdict": "pass"}
    with pytest.raises(SignatureError, match="no attestation"):
        attest.verify_attestation(client, ref, other, attest.GATE_PREDICATE)
    with pytest.raises(SignatureError, match="no attestation"):
        attest.verify_attestation(client, ref, pub, "https://example.com/other")
    other_ref = push_thing(client, "t/attest", b"other model")
    with pytest.raises(SignatureError, match="has no attestations"):
        attest.verify_attestation(client, other_ref, pub, attest.GATE_PREDICATE)
    # the envelope is bound to its subject: copied to another digest it does not verify
    client.push_manifest(
        ref.repository,
        client.get_manifest(ref.repository, att.tag).data,
        signing.suffix_tag(other_ref.digest, "att"),
    )
    with pytest.raises(SignatureError, match="no attestation"):
        attest.verify_attestation(client, other_ref, pub, attest.GATE_PREDICATE)


def test_pae_is_dsse_v1():
    assert attest.pae("t", b"ab") == b"DSSEv1 1 t 2 ab"
