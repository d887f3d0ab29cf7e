"""Both images built here (no daemon, no pull), pushed by digest, signed, attested, tagged last, and run.

The sim's twin passes `pitlane twin check`; the car image, under qemu, imports LiteRT and donkeycar
without TensorFlow, pulls a signed model bundle from the registry, verifies it and checks it on its canary
frames, infers a frame and runs the car app's pi profile with donkeycar's mock camera and drivetrain.

These run wherever the build tools are (buildah, skopeo, mmdebstrap, qemu-user-static: `.ci/run` installs
them; README "Container images"), as root. Cold (a fresh CI clone) the build makes the Debian bases with
mmdebstrap and every layer; later runs reuse out/images (root filesystem tarballs, buildah's layer cache).
`PITLANE_IMAGE_TESTS=0` skips them on a machine that has the tools but not the time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from model_support import gate_doc

from pitlane.artifacts import attest, bundle, oci, signing, trust
from pitlane.images.attest import PREDICATE_TYPE, file_sha256
from pitlane.images.smoke import smoke_car, smoke_sim
from pitlane.images.storage import open_store

TOOLS = ("buildah", "skopeo", "mmdebstrap", "qemu-aarch64-static")
MISSING = [t for t in TOOLS if not shutil.which(t)]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING) or os.geteuid() != 0,
        reason=f"image builds need root and {', '.join(TOOLS)} (missing: {', '.join(MISSING) or 'root'}); "
        "apt-get install buildah skopeo mmdebstrap arch-test qemu-user-static binfmt-support",
    ),
    pytest.mark.skipif(os.environ.get("PITLANE_IMAGE_TESTS") == "0", reason="PITLANE_IMAGE_TESTS=0"),
]

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "out" / "images"
PASSWORD = "image-smoke"
# the notebook image (TensorFlow, ~30 min cold on 2 cores) only when asked: tests/images/test_notebook_image.py
ONLY = [] if os.environ.get("PITLANE_NOTEBOOK_IMAGE_TESTS") == "1" else ["--only", "sim", "--only", "car"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    os.environ[signing.PASSWORD_ENV] = PASSWORD
    try:
        return signing.generate_keys(tmp_path_factory.mktemp("keys") / "release")
    finally:
        del os.environ[signing.PASSWORD_ENV]


@pytest.fixture(scope="module")
def built(registry, keys) -> dict:
    """`pitlane images build --registry --tag smoke --key`: both images, pushed, signed, attested, tagged."""
    env = dict(os.environ, **{signing.PASSWORD_ENV: PASSWORD})
    argv = [sys.executable, "-m", "pitlane.cli", "images", "build", *ONLY, "--registry", registry.host]
    proc = subprocess.run(
        [*argv, "--tag", "smoke", "--key", str(keys[0])], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {p["name"]: p for p in summary["pushed"]}


def test_the_sim_images_twin_passes_twin_check(built):
    result = smoke_sim(open_store(OUT))
    assert result["check"], "twin check returned no results"


def test_the_car_image_pulls_a_signed_model_infers_and_drives_under_qemu(built, registry, keys, models):
    client = oci.Client(registry.host)
    ref = bundle.push(client, bundle.pack(models["a"], gate_report=None, serial=1), oci.Reference(registry.host, "smoke/pilot"), ())  # fmt: skip
    os.environ[signing.PASSWORD_ENV] = PASSWORD
    try:
        digest = oci.sha256_digest(models["a"].read_bytes())  # released as the pipeline does: serial, gate
        trust.sign_release(client, ref, signing.load_private_key(keys[0]), serial=1, report=gate_doc(digest))
    finally:
        del os.environ[signing.PASSWORD_ENV]
    result = smoke_car(open_store(OUT), str(ref), loops=5, public_key=keys[1])
    assert result["machine"] == "aarch64"
    assert result["tensorflow"] is False
    assert result["donkeycar"] == "5.4.0"
    assert result["bundle"]["verified"] == str(ref) and result["bundle"]["canary_error"] <= 0.05
    assert result["profile"] == "pi" and result["autopilot_refusal"] is None
    assert result["mode"] == "local" and result["pilot_calls"] >= 1  # the autopilot drove in the loop
    assert all(-1.5 < v < 1.5 for v in result["frame"] + result["pilot"])


def test_both_images_are_signed_attested_and_tagged(built, registry, keys):
    public = signing.load_public_key(keys[1])
    for name in ("sim", "car"):
        ref = oci.Reference.parse(built[name]["ref"])
        client = oci.Client.for_ref(ref)
        signing.verify(client, ref, public)  # raises SignatureError if not
        predicate = attest.verify_attestation(client, ref, public, PREDICATE_TYPE)
        deps = {d["uri"]: d["digest"] for d in predicate["buildDefinition"]["resolvedDependencies"]}
        assert deps["Pipfile.lock"] == {"sha256": file_sha256(REPO / "Pipfile.lock")}
        tags = requests.get(f"http://{registry.host}/v2/pitlane/{name}/tags/list", timeout=10).json()["tags"]
        assert "smoke" in tags
        manifest = requests.get(
            f"http://{registry.host}/v2/pitlane/{name}/manifests/smoke",
            headers={"Accept": oci.OCI_MANIFEST},
            timeout=10,
        )
        assert manifest.headers["Docker-Content-Digest"] == ref.digest
