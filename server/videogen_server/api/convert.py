"""Translation between the proto messages and the domain types: the only place that knows both."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from videogen.v1 import video_pb2, video_service_pb2

from ..domain import GenerateSpec, GenerationMode, MediaRef, VideoRecord, VideoStatus, is_retryable_failure

_STATUS = {
    # CREATING is our own brief state before Runway answers; callers see it as queued.
    VideoStatus.CREATING: video_pb2.VIDEO_STATUS_QUEUED,
    VideoStatus.QUEUED: video_pb2.VIDEO_STATUS_QUEUED,
    VideoStatus.IN_PROGRESS: video_pb2.VIDEO_STATUS_IN_PROGRESS,
    VideoStatus.COMPLETED: video_pb2.VIDEO_STATUS_COMPLETED,
    VideoStatus.FAILED: video_pb2.VIDEO_STATUS_FAILED,
    VideoStatus.CANCELLED: video_pb2.VIDEO_STATUS_CANCELLED,
}

_MODE = {
    GenerationMode.TEXT_TO_VIDEO: video_pb2.GENERATION_MODE_TEXT_TO_VIDEO,
    GenerationMode.IMAGE_TO_VIDEO: video_pb2.GENERATION_MODE_IMAGE_TO_VIDEO,
    GenerationMode.VIDEO_TO_VIDEO: video_pb2.GENERATION_MODE_VIDEO_TO_VIDEO,
}


def generate_spec(request: video_service_pb2.GenerateRequest) -> GenerateSpec:
    options: dict[str, Any] = (
        _integral(json_format.MessageToDict(request.provider_options))
        if request.HasField("provider_options")
        else {}
    )
    return GenerateSpec(
        model=request.model,
        prompt=request.prompt,
        input_reference=request.input_reference,
        seconds=request.seconds if request.HasField("seconds") else None,
        size=request.size,
        seed=request.seed if request.HasField("seed") else None,
        audio=request.audio if request.HasField("audio") else None,
        video_uri=request.video_uri,
        references=tuple(MediaRef(r.uri, r.tag) for r in request.references),
        reference_images=tuple(MediaRef(r.uri, r.tag) for r in request.reference_images),
        public_figure_threshold=request.content_moderation.public_figure_threshold,
        provider_options=options,
        request_id=request.request_id,
    )


def _integral(value: Any) -> Any:
    """google.protobuf.Struct only has doubles: send 5.0 as 5, since Runway's integer fields want integers."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def video_message(record: VideoRecord) -> video_pb2.Video:
    video = video_pb2.Video(
        id=record.id,
        status=_STATUS[record.status],
        upstream_status=record.upstream_status,
        progress=record.progress,
        mode=_MODE[record.mode],
        model=record.model,
        prompt=record.prompt,
        seconds=record.seconds or 0,
        size=record.size,
        request_id=record.request_id,
        upstream_task_id=record.upstream_id,
        create_time=_timestamp(record.create_time),
        update_time=_timestamp(record.update_time),
        complete_time=_timestamp(record.complete_time),
        expire_time=_timestamp(record.expire_time),
    )
    if record.cost_credits is not None:
        video.cost_credits = record.cost_credits
    if record.estimated_credits is not None:
        video.estimated_credits = record.estimated_credits
    for output in record.outputs:
        item = video.videos.add(index=output.index, content_type=output.content_type)
        if output.size_bytes is not None:
            item.size_bytes = output.size_bytes
    if record.status is VideoStatus.FAILED or record.error_code:
        video.error.code = record.error_code
        video.error.message = record.error_message
        video.error.retryable = is_retryable_failure(record.error_code)
    return video
