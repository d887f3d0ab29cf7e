"""Images into a registry by digest, then tags: a push that fails half-way leaves no tag behind.

buildah writes each image as an OCI layout (gzip layers, the digest fixed from then on); skopeo copies it to
`REGISTRY/pitlane/<name>@sha256:...` (a manifest put by digest, no tag); only when every image is there are
the tags put, which moves no layer. Bytes on the wire are counted as the blobs the registry lacked.
pitlane talks to the registry through its one client, `pitlane.artifacts.oci.Client`; skopeo moves the bytes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from pitlane.artifacts import oci
from pitlane.errors import BadInput, Unavailable
from pitlane.images.plan import Store, image_tag, repository
from pitlane.images.tools import run


@dataclass(frozen=True)
class Pushed:
    name: str
    repository: str  # host:port/pitlane/<name>
    digest: str  # sha256:... of the manifest
    compressed_bytes: int  # manifest + config + layers, as stored
    sent_bytes: int  # what this push moved: the blobs the registry did not have, and the manifest

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"


def target(registry: str, name: str) -> oci.Reference:
    """Where image `name` goes in `registry` (host[:port]): REGISTRY/pitlane/<name>, checked."""
    try:
        return oci.Reference.parse(repository(registry, name))
    except BadInput as exc:
        raise BadInput(f"--registry {registry!r} is not a registry HOST[:PORT]: {exc}") from None


def check_registry(registry: str, timeout_s: float = 5.0) -> None:
    target(registry, "car")
    try:
        oci.Client(registry, timeout_s=timeout_s).ping()
    except Unavailable as exc:
        why = str(exc).rsplit(": ", 1)[-1]  # e.g. ConnectionError, or the HTTP status the registry gave
        raise Unavailable(
            f"registry {registry} does not answer ({why}): start it (pitlane registry serve, or "
            "docker-registry serve CONFIG.yml) and push again; nothing was pushed or tagged"
        ) from None


def oci_layout(store: Store, name: str, out: Path) -> tuple[Path, str, dict]:
    """The built image as an OCI layout under out/oci/<name>; (layout, manifest digest, manifest)."""
    layout = out / "oci" / name
    shutil.rmtree(layout, ignore_errors=True)
    layout.parent.mkdir(parents=True, exist_ok=True)
    run(
        store.buildah("push", "--quiet", "--format", "oci", image_tag(name), f"oci:{layout}:{name}"),
        f"writing {name} as OCI",
    )
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads(_blob(layout, digest).read_bytes())
    return layout, digest, manifest


def _blob(layout: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    return layout / "blobs" / algo / hexpart


def push_by_digest(store: Store, name: str, registry: str, out: Path) -> Pushed:
    """Push one image untagged; returns where it is and how many bytes moved."""
    check_registry(registry)
    layout, digest, manifest = oci_layout(store, name, out)
    where = target(registry, name)
    repo, repo_path = where.name, where.repository
    client = oci.Client(registry, timeout_s=10.0)
    blobs = [manifest["config"], *manifest["layers"]]
    manifest_size = _blob(layout, digest).stat().st_size
    sent = manifest_size + sum(
        int(b["size"]) for b in blobs if not client.blob_exists(repo_path, b["digest"])
    )
    run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
            f"oci:{layout}:{name}",
            f"docker://{repo}@{digest}",
        ],
        f"pushing {name} to {registry}",
        out / f"push-{name}.log",
    )
    total = manifest_size + sum(int(b["size"]) for b in blobs)
    return Pushed(name, repo, digest, total, sent)


def tag(pushed: Pushed, tag_name: str, out: Path) -> str:
    """Point REPOSITORY:tag at an image already pushed by digest (only the manifest moves)."""
    dest = f"{pushed.repository}:{tag_name}"
    run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            f"docker://{pushed.ref}",
            f"docker://{dest}",
        ],
        f"tagging {dest}",
        out / f"push-{pushed.name}.log",
    )
    return dest
