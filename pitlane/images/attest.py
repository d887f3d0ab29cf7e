"""SLSA provenance for a built image: the predicate `pitlane release attest --type slsa-provenance` signs
(pure; no I/O).

SLSA v1's predicate (https://slsa.dev/provenance/v1) names what the image was built from as
*resolved dependencies*: the git commit of the code, the Pipfile.lock that pinned every dependency and the
base image, each with its digest, so a verifier can rebuild or audit it. The in-toto statement around it
(subject = the image by digest) is made when it is signed (pitlane.artifacts.attest).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pitlane.images.plan import IMAGES, SOURCE

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/pitlane-dev/pitlane/images/buildah@v1"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hex(digest: str) -> str:
    algo, _, value = digest.partition(":")
    if algo != "sha256" or len(value) != 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return value


def slsa_predicate(
    name: str,
    repository: str,
    digest: str,
    *,
    revision: str,
    lock_sha256: str,
    base: str,
    base_digest: str,
    version: str = "",
    builder_id: str = "https://github.com/pitlane-dev/pitlane/pipelines/pitlane-release",
) -> dict[str, Any]:
    """The provenance of image `repository@digest`: its build parameters and the three things it came from."""
    spec = IMAGES[name]
    _hex(digest)
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "image": repository,
                "dockerfile": spec.dockerfile,
                "platform": spec.platform,
                "categories": list(spec.categories),
                "leaveOut": list(spec.leave_out),
                "base": base,
                "version": version,
            },
            "resolvedDependencies": [
                {"uri": f"git+{SOURCE}", "digest": {"gitCommit": revision}},
                {"uri": "Pipfile.lock", "digest": {"sha256": lock_sha256}},
                {"uri": base, "digest": {"sha256": _hex(base_digest)}},
            ],
        },
        "runDetails": {"builder": {"id": builder_id}, "metadata": {"invocationId": f"{repository}@{digest}"}},
    }
