"""What both clients share: the types they return (the proto ``Video`` itself, no copy), status helpers,
connection settings and request building.

Decision: methods return the generated ``videogen.v1.video_pb2.Video`` message rather than a dataclass, so
every field the server adds is available at once and JSON output is the proto3 JSON mapping of it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import grpc
from google.protobuf import json_format, struct_pb2
from videogen.v1 import video_pb2, video_service_pb2

from .errors import FailedPrecondition, InvalidArgument

Video = video_pb2.Video
VideoStatus = video_pb2.VideoStatus
GenerationMode = video_pb2.GenerationMode
MediaReference = video_service_pb2.MediaReference
Model = video_service_pb2.Model  # one entry of list_models(): a model id and what it takes

DEFAULT_TARGET = "127.0.0.1:50051"
ENV_TARGET = "VIDEOGEN_TARGET"
ENV_API_KEY = "VIDEOGEN_API_KEY"

TERMINAL_STATUSES = frozenset(
    {
        video_pb2.VIDEO_STATUS_COMPLETED,
        video_pb2.VIDEO_STATUS_FAILED,
        video_pb2.VIDEO_STATUS_CANCELLED,
    }
)

# A reference is either a MediaReference, a bare URI, or a (uri, tag) pair.
ReferenceLike = video_service_pb2.MediaReference | str | tuple[str, str]


class VideoFailed(FailedPrecondition):
    """Raised by :func:`raise_for_status` for a video that ended FAILED or CANCELLED. ``video`` is it."""

    def __init__(self, video: video_pb2.Video) -> None:
        self.video = video
        status = status_name(video.status)
        if video.HasField("error"):
            text = f"video {video.id} {status}: {video.error.code or 'error'}: {video.error.message}"
        else:
            text = f"video {video.id} {status}"
        super().__init__(grpc.StatusCode.FAILED_PRECONDITION, text, f"VIDEO_{status}")


def is_terminal(video: video_pb2.Video) -> bool:
    """True once the video is COMPLETED, FAILED or CANCELLED (its state never changes again)."""
    return video.status in TERMINAL_STATUSES


def status_name(status: int) -> str:
    """``VIDEO_STATUS_IN_PROGRESS`` → ``IN_PROGRESS``."""
    try:
        name = video_pb2.VideoStatus.Name(status)  # type: ignore[arg-type]
    except ValueError:
        return str(status)
    return name.removeprefix("VIDEO_STATUS_")


def mode_name(mode: int) -> str:
    """``GENERATION_MODE_TEXT_TO_VIDEO`` → ``TEXT_TO_VIDEO``."""
    try:
        name = video_pb2.GenerationMode.Name(mode)  # type: ignore[arg-type]
    except ValueError:
        return str(mode)
    return name.removeprefix("GENERATION_MODE_")


def raise_for_status(video: video_pb2.Video) -> video_pb2.Video:
    """Returns ``video`` if it did not end FAILED or CANCELLED, else raises :class:`VideoFailed`.

    ``wait()`` returns the terminal video whatever its outcome (a failed generation is a normal result, not
    an RPC error); call this when you want an exception instead."""
    if video.status in (video_pb2.VIDEO_STATUS_FAILED, video_pb2.VIDEO_STATUS_CANCELLED):
        raise VideoFailed(video)
    return video


def video_to_dict(video: video_pb2.Video) -> dict[str, Any]:
    """The video as JSON-ready data: the proto3 JSON mapping with the ``.proto`` field names
    (``upstream_task_id``), enum names, RFC 3339 times, int64 as strings. The same shape grpcurl prints and
    the Node client's objects use, so a script sees one shape whichever tool it reads."""
    return json_format.MessageToDict(video, preserving_proto_field_name=True)


def model_to_dict(model: video_service_pb2.Model) -> dict[str, Any]:
    """A model description as JSON-ready data (the same mapping as :func:`video_to_dict`)."""
    return json_format.MessageToDict(model, preserving_proto_field_name=True)


PemSource = bytes | str | os.PathLike[str]
"""A PEM certificate or key for the TLS options: its contents as ``bytes``, or the path of a file that
holds it (``str`` or ``pathlib.Path``)."""


def load_pem(value: PemSource | None, name: str) -> bytes | None:
    """The PEM bytes of a TLS option: ``bytes`` are used as they are, a ``str`` or path-like is read as a
    file (``OSError`` if it cannot be read, ``ValueError`` if it holds no PEM block)."""
    if value is None or isinstance(value, bytes):
        return value
    path = os.fspath(value)
    with open(path, "rb") as fh:
        data = fh.read()
    if b"-----BEGIN " not in data:
        raise ValueError(f"{name}: {path} is not a PEM file (no -----BEGIN line)")
    return data


def resolve_target(target: str | None) -> str:
    """An explicit target, else ``$VIDEOGEN_TARGET``, else ``127.0.0.1:50051``."""
    return target or os.environ.get(ENV_TARGET) or DEFAULT_TARGET


USER_AGENT = ("grpc.primary_user_agent", "videogen-python/0.1")
ROUND_ROBIN = ("grpc.lb_policy_name", "round_robin")


def channel_options(target: str) -> tuple[tuple[str, Any], ...]:
    """The channel options for `target`. A target that may stand for several replicas spreads calls over all
    of them (round_robin); grpc's default, pick_first, would send every call to the first. Such a target
    lists several addresses (``ipv4:127.0.0.1:50051,127.0.0.1:50052``) or names a ``dns:`` scheme
    (``dns:///videogen-headless.ns.svc.cluster.local:50051``: a Kubernetes headless Service resolves to one
    address per ready pod). A plain ``host:port`` keeps the default: a name like ``localhost`` resolves to
    several addresses of one server (IPv4 and IPv6), not several servers."""
    address = target.partition("?")[0]
    several = "," in address or address.lower().startswith("dns:")
    return (USER_AGENT, ROUND_ROBIN) if several else (USER_AGENT,)


def resolve_api_key(api_key: str | None) -> str | None:
    """An explicit key, else ``$VIDEOGEN_API_KEY``, else None (no ``authorization`` metadata)."""
    return api_key or os.environ.get(ENV_API_KEY) or None


def auth_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def _reference(ref: ReferenceLike) -> video_service_pb2.MediaReference:
    if isinstance(ref, video_service_pb2.MediaReference):
        return ref
    if isinstance(ref, str):
        return video_service_pb2.MediaReference(uri=ref)
    uri, tag = ref
    return video_service_pb2.MediaReference(uri=uri, tag=tag)


def build_generate_request(
    model: str,
    prompt: str = "",
    *,
    input_reference: str = "",
    video_uri: str = "",
    seconds: int | None = None,
    size: str = "",
    seed: int | None = None,
    audio: bool | None = None,
    references: Iterable[ReferenceLike] = (),
    reference_images: Iterable[ReferenceLike] = (),
    public_figure_threshold: str = "",
    provider_options: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> video_service_pb2.GenerateRequest:
    """Builds a ``GenerateRequest``; a missing ``request_id`` becomes a fresh UUID4 so that the client's own
    retries of this request can never start a second paid generation."""
    req = video_service_pb2.GenerateRequest(
        model=model,
        prompt=prompt,
        input_reference=input_reference,
        video_uri=video_uri,
        size=size,
        request_id=request_id or str(uuid.uuid4()),
        references=[_reference(r) for r in references],
        reference_images=[_reference(r) for r in reference_images],
    )
    if seconds is not None:
        req.seconds = seconds
    if seed is not None:
        req.seed = seed
    if audio is not None:
        req.audio = audio
    if public_figure_threshold:
        req.content_moderation.public_figure_threshold = public_figure_threshold
    if provider_options:
        options = struct_pb2.Struct()
        try:
            options.update(dict(provider_options))
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(
                grpc.StatusCode.INVALID_ARGUMENT, f"provider_options are not JSON-like: {exc}"
            ) from exc
        req.provider_options.CopyFrom(options)
    return req


def parse_option_value(text: str) -> Any:
    """A ``--option`` value: JSON when it parses (``5``, ``true``, ``"x"``, ``[1,2]``), else the raw text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


class VideoPage(NamedTuple):
    """One page of ``list_videos``: the caller's videos on it (newest first) and the token of the next page
    ("" on the last page). A page may hold fewer than ``page_size`` videos without being the last (a filter
    that matched few): only an empty token says there is nothing more."""

    videos: list[video_pb2.Video]
    next_page_token: str


def build_remix_request(
    id: str,
    prompt: str = "",
    *,
    index: int = 0,
    model: str = "",
    seconds: int | None = None,
    size: str = "",
    seed: int | None = None,
    audio: bool | None = None,
    references: Iterable[ReferenceLike] = (),
    reference_images: Iterable[ReferenceLike] = (),
    public_figure_threshold: str = "",
    provider_options: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> video_service_pb2.RemixRequest:
    """Builds a ``RemixRequest`` (a new video from the completed video ``id``; ``model`` empty: the server's
    default, ``aleph2``). The shared fields are built by ``build_generate_request``, so both requests mean
    the same thing by them; a missing ``request_id`` becomes a fresh UUID4, as there."""
    shared = build_generate_request(
        model,
        prompt,
        seconds=seconds,
        size=size,
        seed=seed,
        audio=audio,
        references=references,
        reference_images=reference_images,
        public_figure_threshold=public_figure_threshold,
        provider_options=provider_options,
        request_id=request_id,
    )
    req = video_service_pb2.RemixRequest(
        id=id,
        index=index,
        model=shared.model,
        prompt=shared.prompt,
        size=shared.size,
        request_id=shared.request_id,
        references=shared.references,
        reference_images=shared.reference_images,
    )
    for name in ("seconds", "seed", "audio", "content_moderation", "provider_options"):
        if shared.HasField(name):
            field = getattr(shared, name)
            if name in ("content_moderation", "provider_options"):
                getattr(req, name).CopyFrom(field)
            else:
                setattr(req, name, field)
    return req
