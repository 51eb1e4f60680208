"""The provider's side of a video: the request sent to it and its task as read back. No HTTP here.

Runway's words still live here (its status words, its failure-code prefixes, the URL path of a create);
they move behind the provider port with the Runway adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.video import VideoStatus

# Runway's task status words.
UPSTREAM_STATUS_MAP: dict[str, VideoStatus] = {
    "PENDING": VideoStatus.QUEUED,
    "THROTTLED": VideoStatus.QUEUED,
    "RUNNING": VideoStatus.IN_PROGRESS,
    "SUCCEEDED": VideoStatus.COMPLETED,
    "FAILED": VideoStatus.FAILED,
    "CANCELLED": VideoStatus.CANCELLED,
}


@dataclass(frozen=True)
class UpstreamRequest:
    """What the catalog decided to send to Runway for a GenerateSpec."""

    mode: GenerationMode
    path: str  # e.g. "/v1/text_to_video"
    body: dict[str, Any]
    seconds: int | None  # the duration sent (None: the output follows the input video)
    size: str  # the normalized WxH ("" when the model takes no ratio)


@dataclass(frozen=True)
class UpstreamTask:
    """A Runway task as read from GET /v1/tasks/{id}, in our terms."""

    id: str
    status: str  # Runway's word, verbatim
    progress: float | None = None  # 0..1
    outputs: tuple[str, ...] = ()  # signed URLs: never leave the server
    failure: str = ""
    failure_code: str = ""
    cost_credits: float | None = None
    estimated_credits: float | None = None
    created_at: datetime | None = None

    @property
    def video_status(self) -> VideoStatus:
        # An unknown word from a newer API version is treated as still running, not as a failure.
        return UPSTREAM_STATUS_MAP.get(self.status, VideoStatus.IN_PROGRESS)


def is_retryable_failure(code: str) -> bool:
    """Whether a Runway failureCode suggests the same request might succeed when submitted again."""
    return not code.startswith(
        ("SAFETY.", "INPUT_PREPROCESSING.SAFETY", "ASSET.", "THIRD_PARTY.INPUT_VALIDATION")
    )
