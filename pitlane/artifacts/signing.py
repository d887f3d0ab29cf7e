"""Signatures cosign reads: key-based, the tag format, simple-signing payloads, ECDSA P-256 (docs/signing.md).

For a manifest `R@sha256:<hex>` the signature is an OCI image manifest tagged `R:sha256-<hex>.sig` with
one layer per signature: the simple-signing payload as the blob and its base64 DER signature in the
`dev.cosignproject.cosign/signature` annotation. `cosign verify --key cosign.pub --insecure-ignore-tlog`
and sigstore's policy-controller (`signatureFormat: legacy`) accept what `sign` writes. Any manifest in any
repository can be signed: a model bundle, a container image, an index.

Keys: `load_private_key` reads pitlane's keys and cosign's own encrypted ones (`cosign generate-key-pair`,
scrypt + nacl/secretbox); `generate_keys` writes an encrypted PKCS#8 private key (the passphrase comes from the environment
variable PITLANE_KEY_PASSWORD, never a flag: flags end up in shell history and process lists) and a
SubjectPublicKeyInfo public key.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pitlane.artifacts import oci
from pitlane.artifacts.cache import Source
from pitlane.errors import BadInput, IntegrityError, NotFound, SignatureError, Unavailable

PASSWORD_ENV = "PITLANE_KEY_PASSWORD"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
MAX_SIGNATURE_LAYERS = 64  # a signature manifest with more is refused (someone is flooding it)
MAX_PAYLOAD_BYTES = 1 << 20  # [B]
MAX_SIGNATURE_MANIFEST_BYTES = 256 << 10  # [B] MAX_SIGNATURE_LAYERS descriptors with their signatures


# --- keys -------------------------------------------------------------------------------------------
def _password(required: bool = True) -> bytes | None:
    value = os.environ.get(PASSWORD_ENV)
    if not value:
        if required:
            raise BadInput(f"set the private key's passphrase in the environment variable {PASSWORD_ENV}")
        return None
    return value.encode()


def generate_keys(prefix: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """ECDSA P-256 key pair: PREFIX.key (encrypted PKCS#8 PEM) and PREFIX.pub (public key PEM)."""
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for p in (key_path, pub_path):
        if p.exists() and not overwrite:
            raise BadInput(
                f"{p} already exists; pick another --prefix or remove it (keys are never overwritten)"
            )
    password = _password()
    assert password is not None
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(public_pem(key.public_key()))
    return key_path, pub_path


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    path = Path(path)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"private key {path} does not exist") from None
    try:
        if b"ENCRYPTED SIGSTORE PRIVATE KEY" in pem or b"ENCRYPTED COSIGN PRIVATE KEY" in pem:
            key = serialization.load_der_private_key(open_cosign_key(pem, _password() or b""), None)
        else:
            key = serialization.load_pem_private_key(pem, _password(required=b"ENCRYPTED" in pem))
    except (ValueError, TypeError) as exc:
        raise BadInput(
            f"cannot read private key {path} (wrong {PASSWORD_ENV}, or not a PEM key): {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise BadInput(f"{path} is not an ECDSA P-256 private key")
    return key


def open_cosign_key(pem: bytes, password: bytes) -> bytes:
    """The PKCS#8 DER inside cosign's encrypted key file (`cosign generate-key-pair`): a PEM block around
    JSON {kdf: scrypt N/r/p + salt, cipher: nacl/secretbox + nonce, ciphertext}. ValueError if it won't open."""
    import nacl.exceptions
    import nacl.secret
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    body = b"".join(line for line in pem.strip().splitlines() if not line.startswith(b"-----"))
    try:
        env = json.loads(base64.b64decode(body))
        kdf, cipher = env["kdf"], env["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise ValueError(f"unsupported key encryption {kdf['name']} / {cipher['name']}")
        params = kdf["params"]
        box_key = Scrypt(
            salt=base64.b64decode(kdf["salt"]),
            length=32,
            n=int(params["N"]),
            r=int(params["r"]),
            p=int(params["p"]),
        ).derive(password)
        nonce, ciphertext = base64.b64decode(cipher["nonce"]), base64.b64decode(env["ciphertext"])
        return bytes(nacl.secret.SecretBox(box_key).decrypt(ciphertext, nonce))
    except nacl.exceptions.CryptoError:
        raise ValueError("the passphrase does not open it") from None
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a cosign encrypted key: {exc}") from None


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    path = Path(path)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"public key {path} does not exist") from None
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise BadInput(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise BadInput(f"{path} is not an ECDSA P-256 public key")
    return key


def sign_bytes(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_bytes(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# --- the tag scheme -------------------------------------------------------------------------------
def suffix_tag(digest: str, suffix: str) -> str:
    """cosign's tag for a digest: `sha256:<hex>` + `sig` -> `sha256-<hex>.sig`."""
    oci.check_digest(digest)
    return digest.replace(":", "-") + "." + suffix


def simple_signing_payload(
    docker_reference: str, digest: str, optional: dict[str, str] | None = None
) -> bytes:
    """The payload cosign signs, byte for byte as cosign writes it (field order included)."""
    doc = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": optional or None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def empty_config(layers: list[dict[str, Any]]) -> bytes:
    """The image config cosign puts in its signature manifests (verifiers never read it)."""
    return oci.canonical_json(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]},
        }
    )


def existing_layers(client: oci.Client, repo: str, tag: str) -> list[dict[str, Any]]:
    """The layers of the manifest under `tag`, or [] when there is none."""
    try:
        doc = client.get_manifest(repo, tag, (oci.OCI_MANIFEST,)).json()
    except NotFound:
        return []
    layers = doc.get("layers")
    return [d for d in layers if isinstance(d, dict)] if isinstance(layers, list) else []


def append_layer(client: oci.Client, repo: str, tag: str, blob: bytes, desc: dict[str, Any]) -> str:
    """Push `blob` and a manifest under `tag` holding the layers already there plus `desc`; its digest."""
    client.push_blob(repo, blob)
    layers = [d for d in existing_layers(client, repo, tag) if d != desc] + [desc]
    config = empty_config(layers)
    client.push_blob(repo, config)
    manifest = oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.OCI_MANIFEST,
            "config": oci.descriptor(oci.OCI_CONFIG, config),
            "layers": layers,
        }
    )
    return client.push_manifest(repo, manifest, tag)


def sign(
    client: oci.Client,
    ref: oci.Reference,
    key: ec.EllipticCurvePrivateKey,
    annotations: dict[str, str] | None = None,
) -> oci.Reference:
    """Sign the manifest `ref` (with its digest) as cosign does; returns the signature's tag reference."""
    if not ref.digest:
        raise BadInput(f"{ref}: sign a digest (repo@sha256:...), never a tag that can move")
    payload = simple_signing_payload(ref.name, ref.digest, annotations)
    signature = base64.b64encode(sign_bytes(key, payload)).decode()
    tag = suffix_tag(ref.digest, "sig")
    desc = oci.descriptor(SIMPLE_SIGNING, payload, {SIGNATURE_ANNOTATION: signature})
    append_layer(client, ref.repository, tag, payload, desc)
    return ref.with_tag(tag)


@dataclass(frozen=True)
class Verified:
    """A signature that verified: its payload (parsed) and the signature manifest that holds it."""

    payload: dict[str, Any]
    signature_manifest: bytes
    digest: str  # of the signature manifest (what a cache keeps to verify again offline)


def verify_layers(
    layers: list[dict[str, Any]],
    blobs: dict[str, bytes],
    digest: str,
    key: ec.EllipticCurvePublicKey,
    what: str,
) -> dict[str, Any]:
    """The payload of the first layer whose signature verifies and which signs `digest` (pure).

    `blobs` maps layer digests to their (already digest-checked) bytes. SignatureError says why not.
    """
    if len(layers) > MAX_SIGNATURE_LAYERS:
        raise SignatureError(f"{what}: {len(layers)} signature layers is more than {MAX_SIGNATURE_LAYERS}")
    reasons = []
    for d in layers:
        if d.get("mediaType") != SIMPLE_SIGNING:
            continue
        payload = blobs.get(str(d.get("digest")))
        if payload is None or oci.sha256_digest(payload) != d.get("digest"):
            reasons.append("a signature payload does not match its digest")
            continue
        try:
            raw_sig = base64.b64decode(
                (d.get("annotations") or {}).get(SIGNATURE_ANNOTATION, ""), validate=True
            )
        except ValueError:
            reasons.append("a signature annotation is not base64")
            continue
        if not verify_bytes(key, payload, raw_sig):
            reasons.append("a signature does not verify with this public key")
            continue
        try:
            doc = json.loads(payload)
            signed = doc["critical"]["image"]["docker-manifest-digest"]
        except (ValueError, KeyError, TypeError):
            reasons.append("a signed payload is not a simple-signing document")
            continue
        if signed != digest:
            reasons.append(f"a valid signature signs another digest ({signed})")
            continue
        return doc
    if not reasons:
        raise SignatureError(f"{what}: the signature manifest holds no cosign signature")
    raise SignatureError(f"{what}: no valid signature: {'; '.join(sorted(set(reasons)))}")


def signature_layers(manifest: oci.Manifest, what: str) -> list[dict[str, Any]]:
    """The descriptors of a signature manifest (at most MAX_SIGNATURE_LAYERS + 1 of them; pure)."""
    try:
        layers = manifest.json().get("layers")
    except IntegrityError:
        layers = None
    if not isinstance(layers, list):
        raise SignatureError(f"{what}: signature manifest {manifest.digest} has no layers")
    return [d for d in layers if isinstance(d, dict)][: MAX_SIGNATURE_LAYERS + 1]


def fetch_signature(
    source: oci.Client | Source, ref: oci.Reference
) -> tuple[oci.Manifest, list[dict[str, Any]], dict[str, bytes]]:
    """(signature manifest, its layers, payload blobs by digest) for `ref`'s digest, from the registry or,
    offline, from the cache; every blob checked against its digest and bounded by its descriptor size."""
    assert ref.digest is not None
    src = source if isinstance(source, Source) else Source(source)
    tag = suffix_tag(ref.digest, "sig")
    m = src.tagged(ref.repository, tag, MAX_SIGNATURE_MANIFEST_BYTES)
    if m is None and not src.online:
        raise Unavailable(f"{ref}: its signature is not cached and there is no registry to ask")
    if m is None:
        raise SignatureError(f"{ref} is not signed (no {ref.repository}:{tag})")
    layers = signature_layers(m, str(ref))
    blobs = {}
    for d in layers:
        size = d.get("size")
        if d.get("mediaType") != SIMPLE_SIGNING or not oci.is_digest(str(d.get("digest"))):
            continue
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_PAYLOAD_BYTES:
            continue  # verify_layers reports the payload as missing
        try:
            blobs[d["digest"]] = src.blob(ref.repository, d["digest"], size)
        except (IntegrityError, NotFound):
            continue  # verify_layers reports it
    return m, layers, blobs


def verify(source: oci.Client | Source, ref: oci.Reference, key: ec.EllipticCurvePublicKey) -> Verified:
    """Check `ref` (by digest) carries a signature by `key` that names that digest; SignatureError if not.

    With a `Source` holding a cache, the verified signature is kept there (and found there offline)."""
    if not ref.digest:
        raise BadInput(f"{ref}: verify a digest (repo@sha256:...), never a tag that can move")
    src = source if isinstance(source, Source) else Source(source)
    m, layers, blobs = fetch_signature(src, ref)
    payload = verify_layers(layers, blobs, ref.digest, key, str(ref))
    src.remember(suffix_tag(ref.digest, "sig"), m)
    return Verified(payload, m.data, m.digest)
