"""The content-addressed cache and its Source: checked on every read, corrupt files removed, links for tags."""

from __future__ import annotations

import pytest

from pitlane.artifacts import oci
from pitlane.artifacts.cache import BlobCache, CorruptCacheFile, Source
from pitlane.errors import IntegrityError, Unavailable


def test_put_get_and_a_corrupt_file(tmp_path):
    cache = BlobCache(tmp_path)
    data = b"verified bytes" * 10
    digest = cache.put(data)
    assert digest == oci.sha256_digest(data) and cache.get(digest) == data
    assert cache.get("sha256:" + "0" * 64) is None
    with pytest.raises(IntegrityError, match="refusing to cache"):
        cache.put(b"other bytes", digest)
    cache.path(digest).write_bytes(data[:5])
    with pytest.raises(CorruptCacheFile, match="is corrupt"):
        cache.get(digest)
    assert not cache.has(digest)  # removed: fetching again repairs it


def test_links_name_what_a_tag_pointed_at(tmp_path):
    cache = BlobCache(tmp_path)
    tag = "sha256-" + "a" * 64 + ".sig"
    assert cache.link(tag) is None
    cache.set_link(tag, "sha256:" + "b" * 64)
    assert cache.link(tag) == "sha256:" + "b" * 64
    (cache.links / tag).write_text("not a digest")
    assert cache.link(tag) is None  # a hint that is not a digest is no hint
    with pytest.raises(ValueError):
        cache.set_link("../../etc/passwd", "sha256:" + "b" * 64)


def test_an_offline_source_reads_the_cache_alone(tmp_path):
    cache = BlobCache(tmp_path)
    src = Source(None, cache)
    data = b"a blob"
    digest = cache.put(data)
    assert not src.online
    assert src.blob("any/repo", digest, len(data)) == data
    with pytest.raises(IntegrityError, match="its descriptor says 3"):
        src.blob("any/repo", digest, 3)
    with pytest.raises(Unavailable, match="not cached"):
        src.blob("any/repo", "sha256:" + "c" * 64, 10)
    assert src.tagged("any/repo", "sha256-" + "d" * 64 + ".att", 1000) is None
    with pytest.raises(ValueError):
        Source(None, None)


def test_an_online_source_caches_what_it_pulls(registry, tmp_path):
    client = oci.Client(registry.host)
    data = b"layer bytes" * 30
    digest = client.push_blob("t/cache-source", data)
    cache = BlobCache(tmp_path)
    assert Source(client, cache).blob("t/cache-source", digest, len(data)) == data
    assert cache.get(digest) == data
    with pytest.raises(IntegrityError, match="bytes expected"):
        Source(client).blob("t/cache-source", digest, len(data) - 1)
