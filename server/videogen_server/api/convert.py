"""Translation between the proto messages and the domain types: the only place that knows both."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2
from videogen.v1 import video_pb2, video_service_pb2

from videogen_server.domain.bounds import (
    MAX_REFERENCE_IMAGES,
    MAX_REFERENCE_VIDEOS,
    OPTIONS_MAX_DEPTH,
    OPTIONS_MAX_VALUES,
    OPTIONS_TOO_DEEP,
    OPTIONS_TOO_MANY,
)
from videogen_server.domain.generation import GenerateSpec, GenerationMode, MediaRef
from videogen_server.domain.model_info import (
    ModeInfo,
    ModelInfo,
    ModelStatus,
    OptionInfo,
    OptionType,
    PromptNeed,
    ReferencesInfo,
)
from videogen_server.domain.remix import DEFAULT_REMIX_MODEL, RemixSpec
from videogen_server.domain.video import DEFAULT_KEY_NAME, VideoRecord, VideoStatus
from videogen_server.errors import FieldViolation, InvalidArgument
from videogen_server.services.uploads import UploadResult

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

_MODEL_STATUS = {
    ModelStatus.CURRENT: video_service_pb2.MODEL_STATUS_CURRENT,
    ModelStatus.LEGACY: video_service_pb2.MODEL_STATUS_LEGACY,
}

_PROMPT = {
    PromptNeed.REQUIRED: video_service_pb2.PROMPT_REQUIREMENT_REQUIRED,
    PromptNeed.OPTIONAL: video_service_pb2.PROMPT_REQUIREMENT_OPTIONAL,
    PromptNeed.NOT_ACCEPTED: video_service_pb2.PROMPT_REQUIREMENT_NOT_ACCEPTED,
}

_OPTION_TYPE = {
    OptionType.TEXT: video_service_pb2.PROVIDER_OPTION_TYPE_TEXT,
    OptionType.ENUM: video_service_pb2.PROVIDER_OPTION_TYPE_ENUM,
    OptionType.NUMBER: video_service_pb2.PROVIDER_OPTION_TYPE_NUMBER,
    OptionType.JSON: video_service_pb2.PROVIDER_OPTION_TYPE_JSON,
}


def generate_spec(request: video_service_pb2.GenerateRequest) -> GenerateSpec:
    """The domain spec of a GenerateRequest (see `_generation_spec`)."""
    return _generation_spec(
        request, model=request.model, input_reference=request.input_reference, video_uri=request.video_uri
    )


def remix_spec(request: video_service_pb2.RemixRequest) -> RemixSpec:
    """The domain spec of a RemixRequest: its generation fields are GenerateRequest's (the same names and
    checks, `_generation_spec`), with no video input of the caller's (the source video is resolved by the
    service) and `aleph2` when no model is named. The source id is checked by the use case (as Get's is)."""
    if request.index < 0:
        raise InvalidArgument(
            "invalid request: index: must be 0 or more", [FieldViolation("index", "must be 0 or more")]
        )
    spec = _generation_spec(
        request, model=request.model or DEFAULT_REMIX_MODEL, input_reference="", video_uri=""
    )
    return RemixSpec(source_id=request.id, index=request.index, spec=spec)


def _generation_spec(
    request: video_service_pb2.GenerateRequest | video_service_pb2.RemixRequest,
    *,
    model: str,
    input_reference: str,
    video_uri: str,
) -> GenerateSpec:
    """The fields GenerateRequest and RemixRequest share (same names, numbers aside) as a GenerateSpec.
    Counts are checked on the message first (len() of a repeated field or a Struct is O(1)): a request with
    400k references or a 200k-item option is refused before one domain object is built for it, so its size
    costs the event loop nothing (issue 8 item 5). Everything else is the catalog's to check
    (catalog.build_upstream_request, which applies the same bounds)."""
    violations = [
        FieldViolation(name, f"at most {limit} {what} (no Runway model takes more)")
        for name, count, limit, what in (
            ("references", len(request.references), MAX_REFERENCE_VIDEOS, "video references"),
            ("reference_images", len(request.reference_images), MAX_REFERENCE_IMAGES, "reference images"),
        )
        if count > limit
    ]
    options: dict[str, Any] = {}
    if request.HasField("provider_options"):
        try:
            options = _options(request.provider_options)
        except _TooLarge as exc:
            violations.append(FieldViolation("provider_options", exc.problem))
    if violations:
        head = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(f"invalid request: {head}", violations)
    return GenerateSpec(
        model=model,
        prompt=request.prompt,
        input_reference=input_reference,
        seconds=request.seconds if request.HasField("seconds") else None,
        size=request.size,
        seed=request.seed if request.HasField("seed") else None,
        audio=request.audio if request.HasField("audio") else None,
        video_uri=video_uri,
        references=tuple(MediaRef(r.uri, r.tag) for r in request.references),
        reference_images=tuple(MediaRef(r.uri, r.tag) for r in request.reference_images),
        public_figure_threshold=request.content_moderation.public_figure_threshold,
        provider_options=options,
        request_id=request.request_id,
    )


class _TooLarge(Exception):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _options(struct: struct_pb2.Struct) -> dict[str, Any]:
    """provider_options as plain JSON values, within catalog.OPTIONS_MAX_VALUES / OPTIONS_MAX_DEPTH.

    The values json_format.MessageToDict gives (stored fingerprints depend on them), except that an
    integral number becomes an int (below), built by a walk that charges every container's len() to a
    budget *before* visiting its items: an oversized Struct is refused after O(limit) work, where
    MessageToDict would first convert all of it in Python. Raises _TooLarge."""
    budget = [OPTIONS_MAX_VALUES - len(struct.fields)]
    if budget[0] < 0:
        raise _TooLarge(OPTIONS_TOO_MANY)
    return {key: _value(value, 1, budget) for key, value in struct.fields.items()}


def _value(value: struct_pb2.Value, depth: int, budget: list[int]) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return _integral(value.number_value)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        fields = value.struct_value.fields
        _charge(len(fields), depth, budget)
        return {k: _value(v, depth + 1, budget) for k, v in fields.items()}
    if kind == "list_value":
        values = value.list_value.values
        _charge(len(values), depth, budget)
        return [_value(v, depth + 1, budget) for v in values]
    return None  # null_value, or no kind set (json_format reads both as null)


def _charge(items: int, depth: int, budget: list[int]) -> None:
    if items and depth >= OPTIONS_MAX_DEPTH:
        raise _TooLarge(OPTIONS_TOO_DEEP)
    budget[0] -= items
    if budget[0] < 0:
        raise _TooLarge(OPTIONS_TOO_MANY)


def _integral(value: float) -> float | int:
    """google.protobuf.Struct only has doubles: send 5.0 as 5, since Runway's integer fields want integers.
    (NaN and infinities stay floats: the catalog refuses them as not JSON.)"""
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
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
        runway_key=record.runway_key or DEFAULT_KEY_NAME,
        source_video_id=record.source_video_id,
        create_time=_timestamp(record.create_time),
        update_time=_timestamp(record.update_time),
        complete_time=_timestamp(record.complete_time),
        # The record's own (domain/video.py): Runway's URL expiry, the retention end once archived, or unset
        # when the archive keeps the video forever.
        expire_time=_timestamp(record.expire_time),
    )
    if record.cost_credits is not None:
        video.cost_credits = record.cost_credits
    if record.estimated_credits is not None:
        video.estimated_credits = record.estimated_credits
    for output in record.outputs:
        # sha256: "" until ARCHIVED (the domain's default), so an unarchived output shows none.
        item = video.videos.add(index=output.index, content_type=output.content_type, sha256=output.sha256)
        if output.size_bytes is not None:
            item.size_bytes = output.size_bytes
    if record.status is VideoStatus.FAILED or record.error_code:
        video.error.code = record.error_code
        video.error.message = record.error_message
        video.error.retryable = record.error_retryable
    return video


def _references(info: ReferencesInfo | None) -> video_service_pb2.ModelReferences | None:
    if info is None:
        return None
    refs = video_service_pb2.ModelReferences()
    if info.max_count is not None:
        refs.max_count = info.max_count
    return refs


def _mode_message(info: ModeInfo) -> video_service_pb2.ModelMode:
    return video_service_pb2.ModelMode(
        mode=_MODE[info.mode],
        sizes=info.sizes,
        default_size=info.default_size,
        prompt=_PROMPT[info.prompt],
        reference_images=_references(info.reference_images),
        references=_references(info.references),
    )


def _option_message(info: OptionInfo) -> video_service_pb2.ProviderOption:
    option = video_service_pb2.ProviderOption(
        key=info.key, type=_OPTION_TYPE[info.type], allowed_values=info.allowed_values
    )
    if info.minimum is not None:
        option.minimum = info.minimum
    if info.maximum is not None:
        option.maximum = info.maximum
    if info.max_length is not None:
        option.max_length = info.max_length
    return option


def model_message(info: ModelInfo) -> video_service_pb2.Model:
    model = video_service_pb2.Model(
        id=info.id,
        status=_MODEL_STATUS[info.status],
        replacement=info.replacement,
        status_reason=info.status_reason,
        third_party=info.third_party,
        modes=[_mode_message(m) for m in info.modes],
        audio=info.audio,
        seed=info.seed,
        content_moderation=info.content_moderation,
        provider_options=[_option_message(o) for o in info.options],
        provider_options_closed=info.options_closed,
    )
    if info.durations is not None:
        model.durations.allowed_seconds.extend(info.durations.allowed_seconds)
        model.durations.default_seconds = info.durations.default_seconds
    if info.prompt_max_length is not None:
        model.prompt_max_length = info.prompt_max_length
    return model


def upload_response(result: UploadResult) -> video_service_pb2.UploadResponse:
    return video_service_pb2.UploadResponse(
        uri=result.uri,
        expire_time=_timestamp(result.expire_time),
        size_bytes=result.size_bytes,
        sha256=result.sha256,
        content_type=result.content_type,
    )
