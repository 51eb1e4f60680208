"""What a caller asks to generate: the normalized request and its fingerprint. No gRPC and no HTTP here."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


class GenerationMode(enum.StrEnum):
    TEXT_TO_VIDEO = "TEXT_TO_VIDEO"
    IMAGE_TO_VIDEO = "IMAGE_TO_VIDEO"
    VIDEO_TO_VIDEO = "VIDEO_TO_VIDEO"


@dataclass(frozen=True)
class MediaRef:
    uri: str
    tag: str = ""


@dataclass(frozen=True)
class GenerateSpec:
    """A normalized Generate request, independent of the wire format it came in."""

    model: str
    prompt: str = ""
    input_reference: str = ""
    seconds: int | None = None
    size: str = ""
    seed: int | None = None
    audio: bool | None = None
    video_uri: str = ""
    references: tuple[MediaRef, ...] = ()
    reference_images: tuple[MediaRef, ...] = ()
    public_figure_threshold: str = ""
    provider_options: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""

    def fingerprint_fields(self) -> dict[str, Any]:
        """Everything that defines the request, minus the idempotency key itself.

        The values `dataclasses.asdict` gives (nested MediaRefs as dicts), without its deep copy of the
        rest: the result shares the spec's values, so treat it as read-only."""
        fields = {name: getattr(self, name) for name in _FINGERPRINTED}
        for name in _MEDIA_FIELDS:
            fields[name] = tuple(dataclasses.asdict(ref) for ref in fields[name])
        return fields

    def fingerprint(self) -> str:
        """A stable digest of `fingerprint_fields()`: two requests with one request_id are the same request
        when their fingerprints are equal. Stored with every record, so the digest must never change."""
        return digest(self.fingerprint_fields())


def digest(fields: dict[str, Any]) -> str:
    """The hex SHA-256 of `fields` as canonical JSON (sorted keys, no spaces): a request's fingerprint. Stored
    with every record, so the encoding must never change."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(canonical.encode()).hexdigest()


_FINGERPRINTED = tuple(f.name for f in dataclasses.fields(GenerateSpec) if f.name != "request_id")
_MEDIA_FIELDS = ("references", "reference_images")


def _plain(value: object) -> object:
    """JSON for what json.dumps cannot write itself (only inside provider_options, which is JSON already
    when it comes from the API): a dataclass as its fields, anything else as its str()."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)
