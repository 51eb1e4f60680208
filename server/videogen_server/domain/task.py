"""The provider's side of a video, in our terms: the plan for a request and its task as read back. No HTTP
here, and no provider's vocabulary: each provider maps its own status words and failure codes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.video import VideoStatus


@dataclass(frozen=True)
class UpstreamRequest:
    """A provider's plan for one GenerateSpec: what the video record needs. A provider subclasses it with
    what it will send (opaque to the services, handed back to the same provider's create)."""

    mode: GenerationMode
    seconds: int | None  # the duration sent (None: the output follows the input video)
    size: str  # the normalized WxH ("" when the model takes no ratio)


@dataclass(frozen=True)
class UpstreamTask:
    """A provider's task as last read, in our terms (the provider maps its own vocabulary)."""

    id: str
    status: str  # the provider's own word, verbatim (shown to callers as upstream_status)
    video_status: VideoStatus  # what that word means here
    progress: float | None = None  # 0..1
    outputs: tuple[str, ...] = ()  # signed URLs: never leave the server
    failure: str = ""
    failure_code: str = ""
    failure_retryable: bool = True  # whether the same request might succeed when submitted again
    cost_credits: float | None = None
    estimated_credits: float | None = None
    created_at: datetime | None = None
