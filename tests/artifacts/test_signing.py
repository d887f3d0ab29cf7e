"""cosign-format signatures through the real registry: sign any manifest, verify, and every way to fail."""

from __future__ import annotations

import json

import pytest

from pitlane.artifacts import oci, signing
from pitlane.errors import SignatureError, UserError


def test_sign_then_verify_in_cosign_format(registry, keys, push_thing):
    key, pub, _ = keys
    client = oci.Client(registry.host)
    ref = push_thing(client, "t/sign-ok", b"image")
    sig_ref = signing.sign(client, ref, key)
    assert ref.digest is not None and sig_ref.tag is not None
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
    with pytest.raises(SignatureError, match="is not signed"):
        signing.verify(client, ref, pub)
    signing.sign(client, ref, key)
    with pytest.raises(SignatureError, match="does not verify with this public key"):
        signing.verify(client, ref, other)
    # a valid signature of another digest copied under this digest's .sig tag
    ref2 = push_thing(client, "t/sign-bad", b"second!")
    sig = client.get_manifest(ref.repository, signing.suffix_tag(ref.digest, "sig"))
    client.push_manifest(ref.repository, sig.data, signing.suffix_tag(ref2.digest, "sig"))
    with pytest.raises(SignatureError, match="signs another digest"):
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


def test_reads_cosigns_encrypted_private_key(tmp_path, monkeypatch):
    """cosign generate-key-pair's file: PEM around JSON (scrypt KDF, nacl/secretbox), PKCS#8 inside."""
    import base64

    import nacl.secret
    import nacl.utils
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt, nonce = nacl.utils.random(32), nacl.utils.random(24)
    box_key = Scrypt(salt=salt, length=32, n=32768, r=8, p=1).derive(b"cosign-pw")
    sealed = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    env = {
        "kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(sealed),
    }
    body = base64.encodebytes(json.dumps(env).encode()).decode()
    path = tmp_path / "cosign.key"
    path.write_text(
        f"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{body}-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    )
    monkeypatch.setenv(signing.PASSWORD_ENV, "cosign-pw")
    loaded = signing.load_private_key(path)
    assert loaded.private_numbers() == key.private_numbers()
    monkeypatch.setenv(signing.PASSWORD_ENV, "wrong")
    with pytest.raises(UserError, match="passphrase does not open it"):
        signing.load_private_key(path)
