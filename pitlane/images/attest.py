"""SLSA provenance for a pushed image: an in-toto statement (pure; no I/O).

SLSA v0.2's predicate, the one cosign's `attest --type slsaprovenance` writes, names the *materials* the
image was made from: the git commit of the code, the Pipfile.lock that pinned every dependency and the
base image, each with its digest, so a verifier can rebuild or audit it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pitlane.images.plan import IMAGES, SOURCE

STATEMENT_TYPE = "https://in-toto.io/Statement/v0.1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v0.2"
BUILD_TYPE = "https://github.com/pitlane-dev/pitlane/images/buildah@v1"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hex(digest: str) -> str:
    algo, _, value = digest.partition(":")
    if algo != "sha256" or len(value) != 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return value


def slsa_statement(
    name: str,
    repository: str,
    digest: str,
    *,
    revision: str,
    lock_sha256: str,
    base: str,
    base_digest: str,
    builder_id: str = "https://github.com/pitlane-dev/pitlane/.ci/run",
) -> dict[str, Any]:
    """The in-toto statement saying image `repository@digest` was built from these materials."""
    spec = IMAGES[name]
    return {
        "_type": STATEMENT_TYPE,
        "predicateType": PREDICATE_TYPE,
        "subject": [{"name": repository, "digest": {"sha256": _hex(digest)}}],
        "predicate": {
            "builder": {"id": builder_id},
            "buildType": BUILD_TYPE,
            "invocation": {
                "configSource": {
                    "uri": f"git+{SOURCE}",
                    "digest": {"sha1": revision},
                    "entryPoint": spec.dockerfile,
                },
                "parameters": {"platform": spec.platform, "categories": list(spec.categories), "base": base},
            },
            "metadata": {"reproducible": False, "completeness": {"parameters": True, "materials": True}},
            "materials": [
                {"uri": f"git+{SOURCE}", "digest": {"sha1": revision}},
                {"uri": "Pipfile.lock", "digest": {"sha256": lock_sha256}},
                {"uri": base, "digest": {"sha256": _hex(base_digest)}},
            ],
        },
    }
