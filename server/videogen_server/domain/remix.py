"""What a caller asks Remix for: a video-to-video generation whose source is one of the caller's own videos,
and its fingerprint. No gRPC and no HTTP here."""

from __future__ import annotations

from dataclasses import dataclass

from videogen_server.domain.generation import GenerateSpec, digest

# The model a Remix uses when the request names none (Runway's video-to-video model).
DEFAULT_REMIX_MODEL = "aleph2"


@dataclass(frozen=True)
class RemixSpec:
    """A normalized Remix request: the source (`source_id`, output `index`) and the generation fields, as a
    GenerateSpec whose video input is left empty (the service fills it in with the source once resolved)."""

    source_id: str
    index: int
    spec: GenerateSpec

    @property
    def request_id(self) -> str:
        return self.spec.request_id

    def fingerprint(self) -> str:
        """A stable digest of the request as the caller sent it: the source's id and index and the other
        fields, never the URL or upload the source is resolved to (a fresh signed URL differs on every
        read, so a replay would look like another request). "remix" keeps it apart from any Generate's
        fingerprint: one request_id names one video, whichever RPC made it."""
        return digest(
            {"remix": {"id": self.source_id, "index": self.index}, **self.spec.fingerprint_fields()}
        )
