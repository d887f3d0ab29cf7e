"""A content-addressed blob cache on local disk: `blobs/sha256/<hex>`, written atomically, checked on read.

The car keeps every manifest, config, layer and signature it accepted here, so it can start (and prove what
it runs) without a network. A file whose bytes no longer hash to its name (a truncated write, a bad SD card,
someone editing it) is deleted on read and reported, never returned.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pitlane.artifacts import oci


class CorruptCacheFile(oci.IntegrityError):
    pass


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"

    def path(self, digest: str) -> Path:
        return self.blobs / oci.check_digest(digest).split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store `data` (checked against `digest` when given); returns its digest."""
        actual = oci.sha256_digest(data)
        if digest is not None and actual != digest:
            raise oci.IntegrityError(f"refusing to cache bytes that hash to {actual} as {digest}")
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

    def fetch_blob(self, client: oci.Client | None, repo: str, digest: str, max_bytes: int) -> bytes:
        """From the cache if it is there and intact, else from the registry (then cached)."""
        try:
            data = self.get(digest)
        except CorruptCacheFile:
            if client is None:
                raise
            data = None
        if data is not None:
            return data
        if client is None:
            raise oci.RegistryError(f"blob {digest} is not cached and there is no registry to pull it from")
        data = client.pull_blob(repo, digest, max_bytes)
        self.put(data, digest)
        return data
