"""Where a tub came from: the data bundle `pitlane data pull` rebuilt it from (`.pitlane-bundle.json`).

The file sits in the tub's folder beside donkeycar's manifest (donkeycar and the data checker ignore it,
and it is not part of the tub's content digest). Training reads it to name, in its run record, the data
bundles a model was trained on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ORIGIN_FILE = ".pitlane-bundle.json"


def read_origin(tub: str | Path) -> dict[str, Any] | None:
    """The tub's origin record ({"ref": "REGISTRY/REPO@sha256:...", ...}), or None (absent or unreadable)."""
    try:
        doc = json.loads((Path(tub) / ORIGIN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("ref"), str) else None


def bundle_refs(tubs: Sequence[str | Path]) -> list[str]:
    """The data bundle references of the tubs that were pulled from one (in tub order, each once)."""
    refs: list[str] = []
    for tub in tubs:
        origin = read_origin(tub)
        if origin is not None and origin["ref"] not in refs:
            refs.append(origin["ref"])
    return refs
