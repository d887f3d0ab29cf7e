"""cosign-format signatures through the real registry: sign any manifest, verify, and every way to fail."""

from __future__ import annotations

import json

import pytest

from pitlane.artifacts import oci, signing
from pitlane.errors import UserError


def test_sign_then_verify_in_cosign_format(registry, keys, push_thing):
    key, pub, _ = keys
    client = oci.Client(registry.host)
    ref = push_thing(client, "t/sign-ok", b"image")
    sig_ref = signing.sign(client, ref, key)
    assert sig_ref.tag == ref.digest.replace(":", "-") + ".sig"
    m = client.get_manifest(ref.repository, sig_ref.tag).json()
    (layer,) = m["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = json.loads(client.pull_blob(ref.repository, layer["digest"]))
    assert payload["critical"]["image"]["docker-manifest-digest"] == ref.digest
    assert payload["critical"]["identity"]["docker-reference"] == ref.name
    assert payload["critical"]["type"] == "cosign container image signature"
    assert signing.verify(client, ref, pub).payload == payload
    signing.sign(client, ref, key)  # a second signature is a second layer; both verify
    assert len(client.get_manifest(ref.repository, sig_ref.tag).json()["layers"]) == 2
    signing.verify(client, ref, pub)


def test_refusals(registry, keys, push_thing):
    key, pub, other = keys
    client = oci.Client(registry.host)
    ref = push_thing(client, "t/sign-bad", b"first")
    with pytest.raises(signing.SignatureError, match="is not signed"):
        signing.verify(client, ref, pub)
    signing.sign(client, ref, key)
    with pytest.raises(signing.SignatureError, match="does not verify with this public key"):
        signing.verify(client, ref, other)
    # a valid signature of another digest copied under this digest's .sig tag
    ref2 = push_thing(client, "t/sign-bad", b"second!")
    sig = client.get_manifest(ref.repository, signing.suffix_tag(ref.digest, "sig"))
    client.push_manifest(ref.repository, sig.data, signing.suffix_tag(ref2.digest, "sig"))
    with pytest.raises(signing.SignatureError, match="signs another digest"):
        signing.verify(client, ref2, pub)
    with pytest.raises(UserError, match="never a tag"):
        signing.sign(client, ref.with_tag("v5"), key)


def test_keys_need_the_passphrase_and_are_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.delenv(signing.PASSWORD_ENV, raising=False)
    with pytest.raises(UserError, match=signing.PASSWORD_ENV):
        signing.generate_keys(tmp_path / "k")
    monkeypatch.setenv(signing.PASSWORD_ENV, "pw1")
    key, pub = signing.generate_keys(tmp_path / "k")
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes() and (key.stat().st_mode & 0o777) == 0o600
    with pytest.raises(UserError, match="already exists"):
        signing.generate_keys(tmp_path / "k")
    monkeypatch.setenv(signing.PASSWORD_ENV, "wrong")
    with pytest.raises(UserError, match="cannot read private key"):
        signing.load_private_key(key)
    with pytest.raises(UserError, match="not a PEM public key"):
        signing.load_public_key(key)
    with pytest.raises(UserError, match="does not exist"):
        signing.load_public_key(tmp_path / "none.pub")
