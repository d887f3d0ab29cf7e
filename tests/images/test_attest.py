"""The provenance statement names the image by digest and its three materials."""

import pytest

from pitlane.images.attest import PREDICATE_TYPE, slsa_statement

D = "sha256:" + "ab" * 32
BASE = "sha256:" + "cd" * 32


def test_statement_names_the_image_and_its_materials():
    st = slsa_statement(
        "car", "127.0.0.1:5000/pitlane/car", D, revision="f" * 40, lock_sha256="e" * 64,
        base="localhost/pitlane/base:trixie-arm64", base_digest=BASE,
    )  # fmt: skip
    assert st["predicateType"] == PREDICATE_TYPE
    assert st["subject"] == [{"name": "127.0.0.1:5000/pitlane/car", "digest": {"sha256": "ab" * 32}}]
    materials = {m["uri"]: m["digest"] for m in st["predicate"]["materials"]}
    assert materials["Pipfile.lock"] == {"sha256": "e" * 64}
    assert materials["localhost/pitlane/base:trixie-arm64"] == {"sha256": "cd" * 32}
    assert {"sha1": "f" * 40} in materials.values()
    assert st["predicate"]["invocation"]["configSource"]["entryPoint"] == "Dockerfile.arm64"


def test_a_digest_that_is_not_sha256_is_refused():
    with pytest.raises(ValueError, match="not a sha256 digest"):
        slsa_statement(
            "sim", "r/pitlane/sim", "md5:00", revision="f", lock_sha256="e", base="b", base_digest=BASE
        )
