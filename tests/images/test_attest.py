"""The provenance predicate names the image by digest and its three resolved dependencies."""

import pytest

from pitlane.images.attest import slsa_predicate
from pitlane.release.sign import PREDICATES

D = "sha256:" + "ab" * 32
BASE = "sha256:" + "cd" * 32


def test_predicate_names_the_image_and_what_it_was_built_from():
    p = slsa_predicate(
        "car", "127.0.0.1:5000/pitlane/car", D, revision="f" * 40, lock_sha256="e" * 64,
        base="localhost/pitlane/base:trixie-arm64", base_digest=BASE, version="1.2.3",
    )  # fmt: skip
    deps = {d["uri"]: d["digest"] for d in p["buildDefinition"]["resolvedDependencies"]}
    assert deps["Pipfile.lock"] == {"sha256": "e" * 64}
    assert deps["localhost/pitlane/base:trixie-arm64"] == {"sha256": "cd" * 32}
    assert {"gitCommit": "f" * 40} in deps.values()
    params = p["buildDefinition"]["externalParameters"]
    assert params["dockerfile"] == "Dockerfile.arm64" and params["platform"] == "linux/arm64"
    assert "pandas" in params["leaveOut"] and params["version"] == "1.2.3"
    assert p["runDetails"]["metadata"]["invocationId"] == f"127.0.0.1:5000/pitlane/car@{D}"
    assert PREDICATES["slsa-provenance"] == "https://slsa.dev/provenance/v1"  # the type the release signs


def test_a_digest_that_is_not_sha256_is_refused():
    with pytest.raises(ValueError, match="not a sha256 digest"):
        slsa_predicate(
            "sim", "r/pitlane/sim", "md5:00", revision="f", lock_sha256="e", base="b", base_digest=BASE
        )
