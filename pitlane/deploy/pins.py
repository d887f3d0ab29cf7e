"""The release's pins in argocd/: each image digest and the model reference, each in exactly one place.

- images: ``argocd/pins/images.yaml``, one ``ImageTagTransformer`` per image (``pitlane-sim``,
  ``pitlane-car``), applied last by every overlay;
- model: the ``model-ref=`` literal of the ``pitlane-model`` ConfigMap in ``argocd/base/kustomization.yaml``;
- the image signing key: ``argocd/base/cosign.pub`` (the admission policy only: the car's model key ships
  in the car image, ``pitlane/car/trust/model.pub``).

Pins are rewritten line by line, so a release's diff is one line per changed pin and nothing else.
A pin on the placeholder registry ``registry.invalid`` (RFC 2606: never resolves) has not been released.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from pitlane.artifacts.oci import Reference
from pitlane.errors import BadInput, UserError
from pitlane.images.plan import IMAGE_NAMES  # pinned as pitlane-sim, pitlane-car

IMAGES_FILE = Path("pins/images.yaml")
MODEL_FILE = Path("base/kustomization.yaml")
KEY_FILE = Path("base/cosign.pub")
PLACEHOLDER_REGISTRY = "registry.invalid"
# SHA-256 of the placeholder argocd/base/cosign.pub (a P-256 key whose private half was never kept)
PLACEHOLDER_KEY_SHA256 = "0c717f81da292bec25043bf0fcc18fd7bdc48c593765f4d77ed152760283d6ac"

_MODEL_LINE = re.compile(r"^(?P<head>[ \t]*-[ \t]*model-ref=)(?P<ref>\S*)[ \t]*$", re.MULTILINE)
_IMAGE_DOC_NAME = re.compile(r"^  name: (pitlane-[a-z]+)\s*$")
_NEW_NAME = re.compile(r"^(?P<head>  newName: )(?P<value>\S+)\s*$")
_DIGEST = re.compile(r"^(?P<head>  digest: )(?P<value>\S+)\s*$")


@dataclass(frozen=True)
class Pins:
    """Pinned references: image name ("sim", "car") -> REPO@sha256:HEX, and the model's REPO@sha256:HEX."""

    images: dict[str, str]
    model: str
    key_sha256: str

    def placeholders(self) -> list[str]:
        """The pins a release has not replaced yet, in words."""
        left = [f"image {n}: {ref}" for n, ref in sorted(self.images.items()) if is_placeholder(ref)]
        if is_placeholder(self.model):
            left.append(f"model: {self.model}")
        if self.key_sha256 == PLACEHOLDER_KEY_SHA256:
            left.append(f"key: {KEY_FILE} is the placeholder key")
        return left


def parse_ref(ref: str, what: str) -> tuple[str, str]:
    """(repository, digest) of REPO@sha256:HEX; anything else (a tag, latest, a short digest) is BadInput."""
    if not isinstance(ref, str) or "@" not in ref:
        hint = " (a tag is not a pin: use the digest the registry gave, REPO@sha256:<64 hex>)"
        raise BadInput(f"{what}: {ref!r} is not pinned by digest{hint}")
    try:
        parsed = Reference.parse(ref)
    except BadInput as exc:
        raise BadInput(f"{what}: {ref!r} is not REPO@sha256:<64 lower-case hex digits> ({exc})") from None
    if not parsed.pinned or parsed.digest is None:
        raise BadInput(
            f"{what}: {ref!r} is not REPO@sha256:<64 lower-case hex digits> (no tag with a digest)"
        )
    return parsed.name, parsed.digest


def is_placeholder(ref: str) -> bool:
    return ref.startswith(PLACEHOLDER_REGISTRY + "/")


def read_pins(argocd: Path) -> Pins:
    """The pins as the files hold them; a malformed pin names its file."""
    images: dict[str, str] = {}
    for name, (repo_line, digest_line) in _image_lines(argocd).items():
        images[name] = f"{repo_line[1]}@{digest_line[1]}"
    model_text = _read(argocd / MODEL_FILE)
    models = _MODEL_LINE.findall(model_text)
    if len(models) != 1:
        raise UserError(f"{argocd / MODEL_FILE}: expected one 'model-ref=' literal, found {len(models)}")
    key = _read(argocd / KEY_FILE)
    return Pins(images=images, model=models[0][1], key_sha256=hashlib.sha256(key.encode()).hexdigest())


def pin(
    argocd: Path,
    images: dict[str, str] | None = None,
    model: str | None = None,
    key: Path | None = None,
) -> list[str]:
    """Rewrite the named pins in place (one line per changed value); returns what changed, in words.

    Every reference is checked before any file is written, so a bad one changes nothing.
    """
    images = images or {}
    # the images pitlane builds, and any other the manifests pin (notebook: the hub's, the RayCluster's)
    known = list(dict.fromkeys([*IMAGE_NAMES, *_image_lines(argocd)])) if images else list(IMAGE_NAMES)
    for name, ref in images.items():
        if name not in known:
            raise UserError(f"--image {name}=...: unknown image {name!r} (one of {', '.join(known)})")
        parse_ref(ref, f"--image {name}")
    if model is not None:
        parse_ref(model, "--model")
    key_text = _check_key(key) if key is not None else None

    changes: list[str] = []
    if images:
        path = argocd / IMAGES_FILE
        lines = _read(path).splitlines(keepends=True)
        for name, ((repo_no, old_repo), (digest_no, old_digest)) in _image_lines(argocd).items():
            if name not in images:
                continue
            repo, digest = parse_ref(images[name], f"--image {name}")
            if (repo, digest) != (old_repo, old_digest):
                lines[repo_no] = f"  newName: {repo}\n"
                lines[digest_no] = f"  digest: {digest}\n"
                changes.append(f"image {name}: {old_repo}@{old_digest} -> {repo}@{digest}")
        path.write_text("".join(lines))
    if model is not None:
        path = argocd / MODEL_FILE
        text = _read(path)
        old = read_pins(argocd).model
        if old != model:
            path.write_text(_MODEL_LINE.sub(lambda m: f"{m['head']}{model}", text, count=1))
            changes.append(f"model: {old} -> {model}")
    if key_text is not None:
        path = argocd / KEY_FILE
        if _read(path) != key_text:
            path.write_text(key_text)
            changes.append(f"key: {KEY_FILE} <- {key}")
    return changes


def _image_lines(argocd: Path) -> dict[str, tuple[tuple[int, str], tuple[int, str]]]:
    """For each pinned image: (line number, value) of its newName and of its digest."""
    path = argocd / IMAGES_FILE
    found: dict[str, tuple[tuple[int, str], tuple[int, str]]] = {}
    current: str | None = None
    repo: tuple[int, str] | None = None
    for no, line in enumerate(_read(path).splitlines()):
        if line.startswith("---"):
            current, repo = None, None
        elif (m := _IMAGE_DOC_NAME.match(line)) and current is None:
            current = m[1]
        elif (m := _NEW_NAME.match(line)) and current:
            repo = (no, m["value"])
        elif (m := _DIGEST.match(line)) and current:
            if repo is None:
                raise UserError(f"{path}:{no + 1}: {current}: digest before newName")
            short = current.removeprefix("pitlane-")
            parse_ref(f"{repo[1]}@{m['value']}", f"{path}: {current}")
            found[short] = (repo, (no, m["value"]))
    missing = [n for n in IMAGE_NAMES if n not in found]
    if missing:
        raise UserError(
            f"{path}: no pin (newName + digest) for image(s) {', '.join('pitlane-' + n for n in missing)}"
        )
    return found


def _check_key(key: Path) -> str:
    text = _read(key)
    try:
        public = load_pem_public_key(text.encode())
    except ValueError as exc:
        raise UserError(f"--key {key}: not a PEM public key ({exc})") from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise UserError(f"--key {key}: cosign keys are ECDSA P-256; this is not one")
    return text


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
