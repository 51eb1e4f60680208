"""The service's own vocabulary: videos, their states and requests. No gRPC and no HTTP here."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class VideoStatus(enum.StrEnum):
    """Normalized lifecycle state (the proto's VideoStatus without the prefix)."""

    # Our own state between recording an idempotency key and Runway's answer to the create.
    CREATING = "CREATING"
    QUEUED = "QUEUED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({VideoStatus.COMPLETED, VideoStatus.FAILED, VideoStatus.CANCELLED})


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
        """Everything that defines the request, minus the idempotency key itself."""
        data = dataclasses.asdict(self)
        data.pop("request_id")
        return data


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


@dataclass(frozen=True)
class OutputInfo:
    index: int
    content_type: str = ""
    size_bytes: int | None = None


@dataclass(frozen=True)
class VideoRecord:
    """The service's durable record of one video (see design §2, "The job record")."""

    id: str
    owner: str
    mode: GenerationMode
    model: str
    prompt: str
    seconds: int | None
    size: str
    status: VideoStatus
    create_time: datetime
    update_time: datetime
    request_id: str = ""
    fingerprint: str = ""
    upstream_id: str = ""
    upstream_status: str = ""
    progress: int = 0  # percent
    outputs: tuple[OutputInfo, ...] = ()
    error_code: str = ""
    error_message: str = ""
    complete_time: datetime | None = None
    expire_time: datetime | None = None
    cost_credits: float | None = None
    estimated_credits: float | None = None
    error_retryable: bool = True  # the provider's verdict on error_code (see UpstreamTask.failure_retryable)

    def replace(self, **changes: Any) -> VideoRecord:
        return dataclasses.replace(self, **changes)
