"""A content-addressed blob cache on local disk: `blobs/sha256/<hex>`, written atomically, checked on read.

The car keeps every manifest, config, layer and signature it accepted here, so it can start (and prove what
it runs) without a network. A blob is streamed from the registry into the cache (never whole in memory),
then read back and hashed: the bytes a caller gets are the ones that hashed to the digest. A file whose bytes no longer hash to its name (a truncated write, a bad SD card,
someone editing it) is deleted on read and reported, never returned.

Signatures and attestations are found by tag in a registry (`sha256-<hex>.sig`); offline, `links/<name>`
holds the digest the tag `<name>` pointed at when it was fetched. A link is a hint, not a proof: what it points
at is verified (signature, key, subject digest) every time it is used.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

from pitlane.artifacts import oci
from pitlane.errors import IntegrityError, NotFound, Unavailable

_LINK_NAME = re.compile(r"sha256-[0-9a-f]{64}\.(?:sig|att)")  # cosign's tags


class CorruptCacheFile(IntegrityError):
    """A cached file that no longer matches its digest (it was deleted on read: fetching again repairs it)."""


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.links = self.root / "links"

    def path(self, digest: str) -> Path:
        return self.blobs / oci.check_digest(digest).split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store `data` (checked against `digest` when given); returns its digest."""
        actual = oci.sha256_digest(data)
        if digest is not None and actual != digest:
            raise IntegrityError(f"refusing to cache bytes that hash to {actual} as {digest}")
        if not self.has(actual):
            oci.write_atomic(self.path(actual), data)
        return actual

    def get(self, digest: str) -> bytes | None:
        """The checked bytes, or None when absent; CorruptCacheFile (after deleting it) when they don't match."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if oci.sha256_digest(data) != digest:
            with contextlib.suppress(OSError):
                os.remove(path)
            raise CorruptCacheFile(
                f"cache file {path} is corrupt ({len(data)} bytes that do not hash to {digest}); removed it"
            )
        return data

    def fetch_blob(self, client: oci.Client | None, repo: str, digest: str, size: int) -> bytes:
        """The blob of descriptor (`digest`, `size`): from the cache if it is there and intact, else from
        the registry (then cached). Bytes that hash right but are not `size` long: IntegrityError."""
        try:
            data = self.get(digest)
        except CorruptCacheFile:
            if client is None:
                raise
            data = None
        if data is None:
            if client is None:
                raise Unavailable(f"blob {digest} is not cached and there is no registry to pull it from")
            data = self._download(client, repo, digest, size)
        if len(data) != size:
            raise IntegrityError(f"blob {digest} is {len(data)} bytes; its descriptor says {size}")
        return data

    def _download(self, client: oci.Client, repo: str, digest: str, size: int) -> bytes:
        """Stream the blob to a temporary file beside its place (checked: size and digest), move it into
        place, then read it back and hash it again: what is returned is exactly what verified."""
        dest = self.path(digest)
        part = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            client.pull_blob_to(repo, digest, size, part)
            os.replace(part, dest)
        finally:
            with contextlib.suppress(OSError):
                part.unlink()
        data = self.get(digest)
        if data is None:  # removed between the move and the read (another process cleaning up)
            raise CorruptCacheFile(f"cache file {dest} vanished right after it was written")
        return data

    # --- links: tag -> digest, for signatures and attestations offline ----------------------------------
    def _link_path(self, name: str) -> Path:
        if not _LINK_NAME.fullmatch(name):
            raise ValueError(f"not a link name: {name!r}")  # a programming error, never user input
        return self.links / name

    def link(self, name: str) -> str | None:
        """The digest the tag `name` (e.g. `sha256-<hex>.sig`) pointed at when last fetched, or None."""
        try:
            text = self._link_path(name).read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return text if oci.is_digest(text) else None

    def set_link(self, name: str, digest: str) -> None:
        oci.write_atomic(self._link_path(name), oci.check_digest(digest).encode() + b"\n")


class Source:
    """Where checked bytes come from: the cache when intact, else the registry (then cached); without a
    client, the cache alone (the car starting offline). Without a cache, the registry alone (the CLI).

    Everything by digest is checked against it and bounded in size; a tag (a signature's, an attestation's)
    is asked of the registry when there is one, else read from the cache's links."""

    def __init__(self, client: oci.Client | None, cache: BlobCache | None = None) -> None:
        if client is None and cache is None:
            raise ValueError("a source needs a registry client, a cache, or both")
        self.client = client
        self.cache = cache

    @property
    def online(self) -> bool:
        return self.client is not None

    def blob(self, repo: str, digest: str, max_bytes: int) -> bytes:
        """The blob's checked bytes (never more than `max_bytes`: IntegrityError)."""
        if self.cache is not None:
            data = self.cache.fetch_blob(self.client, repo, digest, max_bytes)
            if len(data) > max_bytes:
                raise IntegrityError(
                    f"blob {digest} is {len(data)} bytes, more than the {max_bytes} expected"
                )
            return data
        assert self.client is not None
        return self.client.pull_blob(repo, digest, max_bytes)

    def manifest(self, repo: str, digest: str, max_bytes: int) -> oci.Manifest:
        """The manifest `digest` (an OCI image manifest), its bytes checked against the digest."""
        data = None
        if self.cache is not None:
            try:
                data = self.cache.get(digest)
            except CorruptCacheFile:
                if self.client is None:
                    raise
        if data is None:
            if self.client is None:
                raise Unavailable(f"manifest {digest} is not cached and there is no registry to pull it from")
            data = self.client.get_manifest(repo, digest, (oci.OCI_MANIFEST,), max_bytes).data
            if self.cache is not None:
                self.cache.put(data, digest)
        if len(data) > max_bytes:
            raise IntegrityError(f"manifest {digest} is {len(data)} bytes, more than the {max_bytes} allowed")
        return oci.Manifest(data, oci.OCI_MANIFEST, digest)

    def tagged(self, repo: str, tag: str, max_bytes: int) -> oci.Manifest | None:
        """The manifest under `tag` (the registry's word when online, the cache's link offline), or None."""
        if self.client is not None:
            try:
                m = self.client.get_manifest(repo, tag, (oci.OCI_MANIFEST,), max_bytes)
            except NotFound:
                return None
            if self.cache is not None:
                self.cache.put(m.data, m.digest)
            return m
        assert self.cache is not None
        digest = self.cache.link(tag)
        return self.manifest(repo, digest, max_bytes) if digest else None

    def remember(self, tag: str, manifest: oci.Manifest) -> None:
        """Keep `tag -> manifest` for offline use (call it once what the manifest holds has verified)."""
        if self.cache is not None:
            self.cache.put(manifest.data, manifest.digest)
            self.cache.set_link(tag, manifest.digest)
