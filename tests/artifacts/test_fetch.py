"""fetch_verified through a real registry of each test's own: from the registry, from the cache offline, and
every kind of tampering refused with an error of the right cause.

The bundles here are built by hand (the bundle format with a few bytes standing in for the model: fetching
never loads a model), so these tests need no TensorFlow.
"""

from __future__ import annotations

import json

import pytest
from model_support import CANARY, TFLITE, blob_file, gate_doc
from model_support import hand_bundle as make_bundle

from pitlane.artifacts import attest, bundle, oci, signing
from pitlane.artifacts.cache import BlobCache, CorruptCacheFile
from pitlane.artifacts.fetch import fetch_verified
from pitlane.errors import BadInput, IntegrityError, NotFound, SignatureError, Unavailable


@pytest.fixture()
def signed(fresh_registry, keys):
    """A bundle pushed to the test's own registry, signed, and its gate report attested."""
    key, pub, other = keys
    client = oci.Client(fresh_registry.host)
    b = make_bundle()
    ref = bundle.push(client, b, oci.Reference(fresh_registry.host, "models/pilot"))
    signing.sign(client, ref, key)
    attest.attest(client, ref, key, attest.GATE_PREDICATE, gate_doc(oci.sha256_digest(TFLITE)))
    return dict(client=client, bundle=b, ref=ref, key=key, pub=pub, other=other, registry=fresh_registry)


def test_from_the_registry_then_from_the_cache_alone(signed, tmp_path):
    client, ref, pub, b = signed["client"], signed["ref"], signed["pub"], signed["bundle"]
    cache = BlobCache(tmp_path / "cache")
    got = fetch_verified(ref, pub, cache, client)
    assert got.ref == ref and got.serial == 1 and got.manifest_bytes == b.manifest()
    assert got.layers == {bundle.TFLITE_NAME: TFLITE, bundle.CANARY_NAME: CANARY}
    sig_manifest = client.get_manifest(ref.repository, signing.suffix_tag(ref.digest, "sig"))
    assert got.signature == sig_manifest.digest
    assert got.gate is not None and got.gate.passed and got.gate.model_digest == got.model_digest
    assert got.gate_note == ""
    # offline: the registry is gone, the cache alone gives the same verified bundle
    signed["registry"].stop()
    offline = fetch_verified(ref, pub, cache, None)
    assert offline == got
    # only what was asked for
    only = fetch_verified(ref, pub, cache, None, titles=(bundle.CANARY_NAME,))
    assert list(only.layers) == [bundle.CANARY_NAME]
    # the wrong key is refused offline too
    with pytest.raises(SignatureError, match="does not verify with this public key"):
        fetch_verified(ref, signed["other"], cache, None)


def test_offline_without_a_cached_copy_is_unavailable_not_refused(signed, tmp_path):
    cache = BlobCache(tmp_path / "cache")
    with pytest.raises(Unavailable, match="not cached"):
        fetch_verified(signed["ref"], signed["pub"], cache, None)
    # the manifest cached, its signature not: still "unavailable" (retry when online), never "unsigned"
    cache.put(signed["bundle"].manifest())
    with pytest.raises(Unavailable, match="signature is not cached"):
        fetch_verified(signed["ref"], signed["pub"], cache, None)


def test_without_a_key_only_digests_are_checked(signed, tmp_path):
    """`pitlane model pull` of a candidate not signed yet (the release's gate task pulls it before signing)."""
    client = signed["client"]
    unsigned = bundle.push(client, make_bundle(serial=2), oci.Reference(client.registry, "models/pilot"))
    got = fetch_verified(unsigned, None, None, client)
    assert got.signature is None and got.gate is None and "no key" in got.gate_note
    paths = got.write(tmp_path / "out")
    assert paths[bundle.TFLITE_NAME].read_bytes() == TFLITE
    assert json.loads((tmp_path / "out" / "bundle.json").read_text())["serial"] == 2
    with pytest.raises(SignatureError, match="is not signed"):
        fetch_verified(unsigned, signed["pub"], None, client)


def test_a_missing_or_unverifiable_attestation_leaves_gate_empty_with_the_reason(signed):
    client, key, pub = signed["client"], signed["key"], signed["pub"]
    ref = bundle.push(client, make_bundle(serial=3), oci.Reference(client.registry, "models/pilot"))
    signing.sign(client, ref, key)
    got = fetch_verified(ref, pub, None, client)
    assert got.gate is None and "has no attestations" in got.gate_note
    attest.attest(client, ref, key, attest.GATE_PREDICATE, {"verdict": "maybe"})
    got = fetch_verified(ref, pub, None, client)
    assert got.gate is None and "not a pitlane gate report" in got.gate_note  # attested, but not one


def test_a_tampered_manifest_is_an_integrity_error(signed, tmp_path):
    ref = signed["ref"]
    at_rest = blob_file(signed["registry"], ref.digest)
    at_rest.write_bytes(at_rest.read_bytes().replace(b"canary.npz", b"canary.npy"))
    with pytest.raises(IntegrityError, match="hash to"):
        fetch_verified(ref, signed["pub"], BlobCache(tmp_path / "cache"), signed["client"])


def test_a_tampered_config_is_an_integrity_error(signed, tmp_path):
    config = blob_file(signed["registry"], oci.sha256_digest(signed["bundle"].config))
    config.write_bytes(config.read_bytes().replace(b'"serial":1', b'"serial":9'))
    with pytest.raises(IntegrityError, match="does not match its digest"):
        fetch_verified(signed["ref"], signed["pub"], BlobCache(tmp_path / "cache"), signed["client"])


def test_a_tampered_layer_is_an_integrity_error_and_nothing_is_written(signed, tmp_path):
    layer = blob_file(signed["registry"], oci.sha256_digest(TFLITE))
    layer.write_bytes(TFLITE[:-1] + b"X")
    cache = BlobCache(tmp_path / "cache")
    with pytest.raises(IntegrityError, match="does not match its digest"):
        fetch_verified(signed["ref"], signed["pub"], cache, signed["client"])
    assert not cache.has(oci.sha256_digest(TFLITE))


def test_a_tampered_signature_is_a_signature_error(signed):
    client, ref = signed["client"], signed["ref"]
    sig = client.get_manifest(ref.repository, signing.suffix_tag(ref.digest, "sig")).json()
    payload = blob_file(signed["registry"], sig["layers"][0]["digest"])
    payload.write_bytes(payload.read_bytes().replace(b'"optional"', b'"Optional"'))
    with pytest.raises(SignatureError, match="payload does not match its digest"):
        fetch_verified(ref, signed["pub"], None, client)


def test_a_signature_for_another_digest_is_a_signature_error(signed):
    client, ref = signed["client"], signed["ref"]
    other = bundle.push(client, make_bundle(serial=4), oci.Reference(client.registry, "models/pilot"))
    assert ref.digest is not None and other.digest is not None
    sig = client.get_manifest(ref.repository, signing.suffix_tag(ref.digest, "sig"))
    client.push_manifest(ref.repository, sig.data, signing.suffix_tag(other.digest, "sig"))
    with pytest.raises(SignatureError, match="signs another digest"):
        fetch_verified(other, signed["pub"], None, client)


def test_a_corrupt_cache_file_is_fetched_again_online_and_refused_offline(signed, tmp_path):
    ref, pub, client = signed["ref"], signed["pub"], signed["client"]
    cache = BlobCache(tmp_path / "cache")
    fetch_verified(ref, pub, cache, client)
    cached = cache.path(oci.sha256_digest(TFLITE))
    cached.write_bytes(TFLITE[:100])  # a truncated write, a bad SD card
    with pytest.raises(CorruptCacheFile, match="is corrupt"):
        fetch_verified(ref, pub, cache, None)  # offline: refused (and removed), never returned
    assert not cached.exists()
    got = fetch_verified(ref, pub, cache, client)  # online: pulled again, and cached again
    assert got.layers[bundle.TFLITE_NAME] == TFLITE and cached.read_bytes() == TFLITE
    cache.path(ref.digest).write_bytes(b"{}")  # the manifest itself
    assert fetch_verified(ref, pub, cache, client).manifest_bytes == signed["bundle"].manifest()


def test_a_blob_larger_than_its_descriptor_is_refused(signed):
    """A signed manifest whose descriptor understates a layer's size: the pull stops at the size."""
    client, key = signed["client"], signed["key"]
    b = make_bundle(serial=5)
    doc = json.loads(b.manifest())
    doc["layers"][0]["size"] -= 1
    manifest = oci.canonical_json(doc)
    for data in (b.config, TFLITE, CANARY):
        client.push_blob("models/pilot", data)
    digest = client.push_manifest("models/pilot", manifest, "short")
    ref = oci.Reference(client.registry, "models/pilot", None, digest)
    signing.sign(client, ref, key)
    with pytest.raises(IntegrityError, match=f"more than the {len(TFLITE) - 1} bytes expected"):
        fetch_verified(ref, signed["pub"], None, client)


def test_not_found_and_not_a_bundle_are_bad_input(signed):
    client = signed["client"]
    missing = oci.Reference(client.registry, "models/pilot", None, "sha256:" + "1" * 64)
    with pytest.raises(NotFound):
        fetch_verified(missing, signed["pub"], None, client)
    sig_tag = signing.suffix_tag(signed["ref"].digest, "sig")
    with pytest.raises(BadInput, match="not a pitlane model bundle"):
        fetch_verified(signed["ref"].with_tag(sig_tag), signed["pub"], None, client)
