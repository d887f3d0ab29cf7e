"""Before the ingest acknowledges a car's `tub` record, the registry must hold what the record names.

The car deletes a tub's files only after that acknowledgement, so the check reads the registry itself: the
manifest exists under the car's own repository (`data/<car>`), is a tub bundle, and its config parses and
names the same car. The answer separates "not there or not a bundle" (refused) from "registry down"
(try again later: nothing is stored and nothing acknowledged, so the car sends the record again).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pitlane.artifacts import oci
from pitlane.errors import BadInput, Refused, Unavailable, UserError
from pitlane.fleet.protocol import TUB_MEDIA_TYPE
from pitlane.fleet.store import TubEntry

CONFIG_MEDIA_TYPE = "application/vnd.pitlane.tub.config.v1+json"
CONFIG_SCHEMA = "pitlane.tub-bundle/1"
MAX_CONFIG_BYTES = 1 << 20  # [B] a bundle's config lists its chunks: kilobytes, never a megabyte


class TubRefused(UserError):
    """The record names no valid bundle of this car: refused (counted), never acknowledged."""


class RegistryDown(UserError):
    """The registry could not answer: the record waits for the car's next resend."""


@dataclass(frozen=True)
class Bundle:
    repository: str  # data/<car>
    digest: str  # the manifest's


def data_repository(car: str) -> str:
    """Where a car's data bundles live, and the only repository the gateway lets it write."""
    return f"data/{car}"


def parse_ref(car: str, ref: str) -> Bundle:
    """The repository and digest a tub record names; the registry part is the car's view (the gateway)."""
    try:
        parsed = oci.Reference.parse(ref)
    except UserError as exc:
        raise TubRefused(f"tub ref {ref!r}: {exc}") from None
    if parsed.repository != data_repository(car):
        raise TubRefused(f"tub ref {ref!r} is not in the car's own repository {data_repository(car)}")
    if not parsed.digest:
        raise TubRefused(f"tub ref {ref!r} names no digest")
    return Bundle(parsed.repository, parsed.digest)


def check_tub(client: oci.Client, car: str, body: dict[str, Any]) -> TubEntry:
    """The index entry for a tub record, read from the registry (TubRefused, RegistryDown)."""
    bundle = parse_ref(car, str(body.get("ref")))
    try:
        manifest = client.get_manifest(bundle.repository, bundle.digest).json()
        config_desc = manifest.get("config") or {}
        if (
            manifest.get("artifactType") != TUB_MEDIA_TYPE
            or config_desc.get("mediaType") != CONFIG_MEDIA_TYPE
        ):
            raise TubRefused(f"{bundle.repository}@{bundle.digest} is not a tub bundle ({TUB_MEDIA_TYPE})")
        raw = client.pull_blob(bundle.repository, str(config_desc.get("digest")), MAX_CONFIG_BYTES)
    except oci.NotFound:
        raise TubRefused(f"the registry has no {bundle.repository}@{bundle.digest}") from None
    except (oci.IntegrityError, TubRefused) as exc:
        raise TubRefused(str(exc)) from None
    except (Unavailable, Refused, BadInput) as exc:  # down, or refusing the ingest: not the tub's fault
        raise RegistryDown(str(exc)) from None
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise TubRefused(f"{bundle.repository}@{bundle.digest}: config is not JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("schema") != CONFIG_SCHEMA:
        raise TubRefused(f"{bundle.repository}@{bundle.digest}: config is not {CONFIG_SCHEMA}")
    if config.get("car") != car:
        raise TubRefused(f"{bundle.repository}@{bundle.digest}: config names car {config.get('car')!r}")
    return TubEntry(f"{client.registry}/{bundle.repository}@{bundle.digest}", config)
