"""A small OCI distribution client on `requests`: references, blobs and manifests, every digest checked.

Why not oras-py: its push has no `artifactType` (the config media type becomes `vnd.unknown`), it cannot
put an arbitrary manifest under cosign's `sha256-<hex>.sig` tag, and it does not check a pulled manifest's
bytes against the digest asked for. The distribution API needed here is a dozen HTTP calls
(distribution-spec v1.1: `/v2/<name>/blobs/...`, `/v2/<name>/manifests/<reference>`, `/v2/<name>/tags/list`),
so this module speaks it directly and stays general: `images` and `release` push any blob and manifest with it.

Plain HTTP is used for 127.0.0.1/localhost registries (the local `docker-registry`), HTTPS elsewhere.
Every answer is streamed and read no further than its bound (a manifest's cap, a blob's descriptor size, a
small cap for listings and errors); `Client.deadline` bounds a whole pull in wall-clock time
(`pitlane.artifacts.transport`), and `pull_blob_to` streams a blob to disk. Failures raise by cause (`pitlane.errors`): Unavailable (unreachable, 5xx, 429: retry), NotFound (404),
IntegrityError (bytes that do not match their digest or are larger than allowed), BadInput (any other
refusal: a bad name, missing credentials).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from pitlane.artifacts import transport
from pitlane.errors import BadInput, IntegrityError, NotFound, Refused, Unavailable

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
MAX_MANIFEST_BYTES = 4 << 20  # [B] distribution's own limit for a manifest
MAX_LISTING_BYTES = 4 << 20  # [B] a tag list or catalog answer
CHUNK = 1 << 16  # [B] download chunk

# The reference grammar (distribution's `reference` package, with the registry required and sha256 only):
#   REGISTRY/PATH[:TAG][@sha256:HEX]; REGISTRY = host[:port]; PATH = component(/component)*
_DIGEST_RE = r"sha256:[0-9a-f]{64}"
_HOST_PART = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_REGISTRY_RE = rf"(?P<host>{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]+))?"
_COMPONENT_RE = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = rf"{_COMPONENT_RE}(?:/{_COMPONENT_RE})*"
_TAG_RE = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
REFERENCE = re.compile(
    rf"(?P<registry>{_REGISTRY_RE})/(?P<repository>{_PATH_RE})(?::(?P<tag>{_TAG_RE}))?(?:@(?P<digest>{_DIGEST_RE}))?"
)  # use with fullmatch (never match + `$`: `$` also matches before a trailing newline)
_DIGEST = re.compile(_DIGEST_RE)
_REGISTRY = re.compile(_REGISTRY_RE)
_PATH = re.compile(_PATH_RE)
_TAG = re.compile(_TAG_RE)
MAX_NAME = 255  # [chars] registry/repository, distribution's limit
FORM = "REGISTRY/REPOSITORY[:TAG][@sha256:...]"


def _why_not(text: object) -> str:
    """Why `text` is not a reference, in words (the grammar already said no)."""
    if not isinstance(text, str) or not text:
        return f"{text!r} is not an image reference ({FORM})"
    if any(c.isspace() for c in text):
        return f"{text!r} is not an image reference ({FORM}): it contains whitespace (a trailing newline?)"
    rest, at, digest = text.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        return f"{text!r}: {digest!r} is not a sha256 digest (sha256: and 64 lower-case hex digits)"
    registry, slash, path = rest.partition("/")
    if not slash:
        return (
            f"{text!r} names no registry: write it as HOST:PORT/REPOSITORY, e.g. 127.0.0.1:5000/models/pilot"
        )
    if not _REGISTRY.fullmatch(registry):
        return f"{text!r}: {registry!r} is not a registry HOST[:PORT] (the port is digits)"
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            return f"{text!r}: {tag!r} is not a valid tag"
    if not _PATH.fullmatch(path):
        return f"{text!r}: {path!r} is not a valid repository name (lower case, digits, . _ - /)"
    return f"{text!r} is not an image reference ({FORM})"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(text: str) -> bool:
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


def check_digest(digest: str) -> str:
    if not is_digest(digest):
        raise BadInput(f"{digest!r} is not a sha256 digest (sha256: and 64 lower-case hex digits)")
    return digest


def descriptor(media_type: str, data: bytes, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An OCI content descriptor for `data`."""
    d: dict[str, Any] = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    if annotations:
        d["annotations"] = dict(annotations)
    return d


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces): the same content always has the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Reference:
    """`registry/repository[:tag][@sha256:...]`; the registry part is required (there is no default).

    The one parser of references in pitlane: release.yaml, the GitOps pins, rendered manifests, the
    images' pushes and the car all read references through `Reference.parse`."""

    registry: str  # host[:port]
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """The reference `text` names, exactly as written (no whitespace, no trailing newline); BadInput
        naming the part that is wrong otherwise."""
        m = REFERENCE.fullmatch(text) if isinstance(text, str) else None
        if m is None:
            raise BadInput(_why_not(text))
        registry, host, port = m["registry"], m["host"], m["port"]
        if not ("." in host or port or host == "localhost" or host.startswith("[")):
            raise BadInput(
                f"{text!r} names no registry: write it as HOST:PORT/REPOSITORY, e.g. 127.0.0.1:5000/models/pilot"
            )
        if port and not 0 < int(port) < 65536:
            raise BadInput(f"{text!r}: port {port} of registry {registry!r} is not a TCP port (1-65535)")
        if len(registry) + 1 + len(m["repository"]) > MAX_NAME:
            raise BadInput(f"{text!r}: the name is longer than {MAX_NAME} characters")
        return cls(registry, m["repository"], m["tag"], m["digest"])

    @property
    def pinned(self) -> bool:
        """Named by digest alone (`REGISTRY/REPO@sha256:...`, no tag): what a release and a car accept."""
        return self.digest is not None and self.tag is None

    @property
    def name(self) -> str:
        """registry/repository, no tag or digest (cosign's docker-reference)."""
        return f"{self.registry}/{self.repository}"

    @property
    def ref(self) -> str:
        """What goes in a manifest URL: the digest if known, else the tag (default `latest`)."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, None, digest)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or 'latest'}"


@dataclass(frozen=True)
class Manifest:
    data: bytes  # exactly the registry's bytes: their sha256 is the digest
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.data)
        except ValueError as exc:
            raise IntegrityError(f"manifest {self.digest} is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise IntegrityError(f"manifest {self.digest} is not a JSON object")
        return doc


class Client:
    """One registry (`host[:port]`). Counts the body bytes it sends and receives (`sent`, `received`)."""

    def __init__(
        self,
        registry: str,
        *,
        timeout_s: float = 30.0,
        scheme: str | None = None,
        auth: tuple[str, str]
        | None = None,  # HTTP basic auth (user, password), e.g. a car at the NUC's gateway
    ) -> None:
        self.registry = registry
        host = registry[1 : registry.find("]")] if registry.startswith("[") else registry.split(":")[0]
        self.scheme = scheme or ("http" if host in ("127.0.0.1", "localhost", "::1") else "https")
        self.base = f"{self.scheme}://{registry}/v2"
        self.timeout_s = timeout_s  # [s] per socket operation
        self.auth = auth
        self._sockets = transport.Sockets()
        self.session = transport.session(self._sockets)
        self.session.auth = auth
        self._deadline: transport.Deadline | None = None
        self.sent = 0  # [B] request bodies
        self.received = 0  # [B] response bodies

    @classmethod
    def for_ref(cls, ref: Reference, **kw: Any) -> Client:
        return cls(ref.registry, **kw)

    @contextlib.contextmanager
    def deadline(self, seconds: float | None) -> Iterator[None]:
        """Every request inside ends within `seconds` from now, wall clock, however slowly the registry
        sends (Unavailable after it). None: no deadline; inside another deadline, the outer one holds."""
        if seconds is None or self._deadline is not None:
            yield
            return
        deadline = transport.Deadline(seconds, self._sockets.cut)
        self._deadline = deadline
        try:
            yield
        finally:
            deadline.cancel()
            self._deadline = None
            if deadline.expired:  # its connections were shut down: start the next pull on fresh ones
                self.session.close()
                self.session = transport.session(self._sockets)
                self.session.auth = self.auth

    def _unreachable(self, what: str, exc: BaseException, verb: str = "unreachable") -> Unavailable:
        d = self._deadline
        if d is not None and (d.expired or d.remaining() <= 0):
            return Unavailable(
                f"registry {self.registry} did not finish {what} within the pull's {d.seconds:g} s deadline "
                "(a slow or stalled registry); the pull is tried again later"
            )
        return Unavailable(f"registry {self.registry} {verb} while {what}: {type(exc).__name__}")

    # --- HTTP -------------------------------------------------------------------------------------
    def _request(self, method: str, url: str, what: str, ok: tuple[int, ...], **kw: Any) -> requests.Response:
        """The response, its body not read yet (always streamed: every caller reads it within a bound)."""
        if not url.startswith("http"):
            url = self.base + url
        timeout = self.timeout_s
        if self._deadline is not None:
            left = self._deadline.remaining()
            if left <= 0:
                raise self._unreachable(what, TimeoutError())
            timeout = min(timeout, left)
        try:
            resp = self.session.request(method, url, timeout=timeout, stream=True, **kw)
        except (requests.RequestException, OSError) as exc:
            raise self._unreachable(what, exc) from None
        body = kw.get("data")
        if isinstance(body, bytes):
            self.sent += len(body)
        if resp.status_code == 404:
            _drain(resp)
            raise NotFound(f"{what}: not found in registry {self.registry}")
        if resp.status_code not in ok:
            detail = _drain(resp)[:300].strip().replace("\n", " ")
            cause = (
                Refused
                if resp.status_code in (401, 403)  # credentials or a policy: an operator's to fix, then retry
                else BadInput
                if 400 <= resp.status_code < 500 and resp.status_code != 429  # the request itself is wrong
                else Unavailable  # 5xx, 429, or an answer no registry gives (a proxy, garbage): retry later
            )
            raise cause(f"{what}: registry {self.registry} answered {resp.status_code}: {detail}")
        return resp

    def ping(self) -> None:
        self._request("GET", "/", "checking the registry", (200, 401)).close()

    # --- blobs ------------------------------------------------------------------------------------
    def blob_exists(self, repo: str, digest: str) -> bool:
        try:
            self._request("HEAD", f"/{repo}/blobs/{digest}", f"checking blob {digest}", (200,)).close()
        except NotFound:
            return False
        return True

    def push_blob(self, repo: str, data: bytes, digest: str | None = None) -> str:
        """Upload `data` (skipped when the registry already has it); returns its digest."""
        digest = digest or sha256_digest(data)
        if self.blob_exists(repo, digest):
            return digest
        what = f"uploading blob {digest} to {repo}"
        start = self._request("POST", f"/{repo}/blobs/uploads/", what, (202,))
        location = start.headers.get("Location", "")
        start.close()
        if not location:
            raise Unavailable(f"{what}: registry {self.registry} gave no upload location")
        if location.startswith("/"):
            location = f"{self.scheme}://{self.registry}{location}"
        sep = "&" if "?" in location else "?"
        self._request(
            "PUT",
            f"{location}{sep}digest={digest}",
            what,
            (201,),
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        ).close()
        return digest

    def _stream(
        self, resp: requests.Response, max_bytes: int | None, what: str, sink: Callable[[bytes], object]
    ) -> int:
        """Hand the response body to `sink` chunk by chunk, stopped as soon as it passes `max_bytes`
        (IntegrityError); the number of bytes read."""
        framed = "Content-Length" in resp.headers or "chunked" in resp.headers.get("Transfer-Encoding", "")
        size = 0
        try:
            if not framed:  # headers cut short: a truncated body would look complete
                raise Unavailable(f"registry {self.registry} sent an answer of no stated length while {what}")
            announced = _content_length(resp)
            if max_bytes is not None and announced is not None and announced > max_bytes:
                raise IntegrityError(
                    f"{what}: the registry announces {announced} bytes, more than the {max_bytes} bytes expected"
                )
            for chunk in resp.iter_content(CHUNK):
                size += len(chunk)
                self.received += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise IntegrityError(f"{what}: more than the {max_bytes} bytes expected")
                sink(chunk)
        except (requests.RequestException, OSError) as exc:
            raise self._unreachable(what, exc, "dropped the link") from None
        finally:
            resp.close()
        return size

    def _read(self, resp: requests.Response, max_bytes: int | None, what: str) -> bytes:
        """The response body, read in chunks and stopped as soon as it passes `max_bytes`."""
        parts: list[bytes] = []
        self._stream(resp, max_bytes, what, parts.append)
        return b"".join(parts)

    def pull_blob(
        self, repo: str, digest: str, max_bytes: int | None = None, *, size: int | None = None
    ) -> bytes:
        """The blob's bytes, checked against `digest` and no more than `max_bytes` (IntegrityError).

        `size`: its descriptor's size, exactly: more is refused (IntegrityError), fewer is a transfer cut
        short (Unavailable: the next try may get it all)."""
        check_digest(digest)
        what = f"pulling blob {digest}"
        if size is not None:
            max_bytes = size if max_bytes is None else min(size, max_bytes)
        resp = self._request("GET", f"/{repo}/blobs/{digest}", what, (200,))
        data = self._read(resp, max_bytes, what)
        if size is not None and len(data) < size:
            raise Unavailable(
                f"registry {self.registry} sent {len(data)} of the {size} bytes of blob {digest} (a dropped link?)"
            )
        if sha256_digest(data) != digest:
            raise IntegrityError(f"blob {digest} from {self.registry}/{repo} does not match its digest")
        return data

    def pull_blob_to(self, repo: str, digest: str, size: int, dest: Path) -> None:
        """Stream the blob of descriptor (`digest`, `size`) into the new file `dest`, hashing as it goes:
        at most `size` bytes ever arrive (more: IntegrityError, at once), fewer is a transfer cut short
        (Unavailable), another hash is IntegrityError. On any failure `dest` is removed. Memory: one chunk."""
        check_digest(digest)
        what = f"pulling blob {digest}"
        h = hashlib.sha256()
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(dest, "wb") as f:
                resp = self._request("GET", f"/{repo}/blobs/{digest}", what, (200,))

                def write(chunk: bytes) -> None:
                    h.update(chunk)
                    f.write(chunk)

                got = self._stream(resp, size, what, write)
                f.flush()
                os.fsync(f.fileno())
            if got < size:
                raise Unavailable(
                    f"registry {self.registry} sent {got} of the {size} bytes of blob {digest} (a dropped link?)"
                )
            if "sha256:" + h.hexdigest() != digest:
                raise IntegrityError(f"blob {digest} from {self.registry}/{repo} does not match its digest")
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise

    # --- manifests --------------------------------------------------------------------------------
    def push_manifest(self, repo: str, data: bytes, reference: str, media_type: str = OCI_MANIFEST) -> str:
        """PUT a manifest under a tag or its digest; returns its digest (checked against the registry's)."""
        digest = sha256_digest(data)
        resp = self._request(
            "PUT",
            f"/{repo}/manifests/{reference}",
            f"pushing manifest to {repo}:{reference}",
            (201,),
            data=data,
            headers={"Content-Type": media_type},
        )
        theirs = resp.headers.get("Docker-Content-Digest")
        resp.close()
        if theirs and theirs != digest:
            raise IntegrityError(f"registry {self.registry} stored manifest {theirs}, not {digest}")
        return digest

    def get_manifest(
        self,
        repo: str,
        reference: str,
        accept: tuple[str, ...] = MANIFEST_TYPES,
        max_bytes: int = MAX_MANIFEST_BYTES,
    ) -> Manifest:
        """The manifest's exact bytes (at most `max_bytes`); pulled by digest, they must hash to it."""
        what = f"pulling manifest {repo}{'@' if is_digest(reference) else ':'}{reference}"
        resp = self._request(
            "GET",
            f"/{repo}/manifests/{reference}",
            what,
            (200,),
            headers={"Accept": ", ".join(accept)},
        )
        data = self._read(resp, max_bytes, what)
        digest = sha256_digest(data)
        if is_digest(reference) and digest != reference:
            raise IntegrityError(f"{what}: the registry's bytes hash to {digest}, not the digest asked for")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(data, media_type, digest)

    def resolve(self, repo: str, reference: str) -> str:
        """The digest a tag (or digest) points at, by HEAD (no manifest body on the wire)."""
        if is_digest(reference):
            return reference
        resp = self._request(
            "HEAD",
            f"/{repo}/manifests/{reference}",
            f"resolving {repo}:{reference}",
            (200,),
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        resp.close()
        digest = resp.headers.get("Docker-Content-Digest", "")
        if not is_digest(digest):
            return self.get_manifest(repo, reference).digest
        return digest

    def manifest_exists(self, repo: str, reference: str) -> bool:
        try:
            self.resolve(repo, reference)
        except NotFound:
            return False
        return True

    def tags(self, repo: str) -> list[str]:
        try:
            resp = self._request("GET", f"/{repo}/tags/list", f"listing tags of {repo}", (200,))
        except NotFound:
            return []
        tags = _listing(self._read(resp, MAX_LISTING_BYTES, f"listing tags of {repo}"), "tags")
        return sorted(str(t) for t in tags)

    def catalog(self) -> list[str]:
        what = "listing repositories"
        resp = self._request("GET", "/_catalog", what, (200,))
        return sorted(str(r) for r in _listing(self._read(resp, MAX_LISTING_BYTES, what), "repositories"))


def _listing(data: bytes, key: str) -> list[Any]:
    """The list under `key` of a registry's JSON listing ([] when it holds none)."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise IntegrityError(f"the registry's {key} listing is not JSON") from None
    items = doc.get(key) if isinstance(doc, dict) else None
    return items if isinstance(items, list) else []


def _content_length(resp: requests.Response) -> int | None:
    try:
        return int(resp.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _drain(resp: requests.Response, limit: int = 1 << 16) -> str:
    """A small error answer's text, read whole so its connection goes back to the pool (a 404 is the
    common answer to "is there an attestation?"); a large one is not read, its connection is closed."""
    text = ""
    try:
        if 0 <= int(resp.headers.get("Content-Length") or -1) <= limit:
            text = resp.text
    except (ValueError, requests.RequestException):
        pass
    resp.close()
    return text


def write_atomic(dest: Path, data: bytes) -> None:
    """Write `data` to `dest` so a reader sees the old file or the whole new one, never a partial one, and
    the new one survives a power cut once this returns (the file and its folder are synced)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    with contextlib.suppress(OSError):  # a folder that cannot be opened for reading: the rename stands
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
