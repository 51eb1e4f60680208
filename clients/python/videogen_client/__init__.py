"""Python client of ``videogen.v1.VideoService``: a sync and an asyncio client, typed errors, resumable
downloads, and the ``videogen`` CLI.

    from videogen_client import VideoClient

    with VideoClient("127.0.0.1:50051") as client:
        video = client.generate("gen4.5", "a cat", seconds=5)
        video = client.wait(video.id)
        if video.status == VideoStatus.VIDEO_STATUS_COMPLETED:
            client.download(video.id, "cat.mp4")
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from .aio import AsyncVideoClient
from .client import VideoClient
from .download import RetryPolicy
from .errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    VideogenError,
    from_rpc_error,
)
from .models import (
    GenerationMode,
    MediaReference,
    Model,
    Video,
    VideoFailed,
    VideoStatus,
    is_terminal,
    model_to_dict,
    raise_for_status,
    status_name,
    video_to_dict,
)

try:
    __version__ = _version("videogen-client")  # its own distribution, released with the server
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Aborted",
    "AlreadyExists",
    "AsyncVideoClient",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "GenerationMode",
    "Internal",
    "InvalidArgument",
    "MediaReference",
    "Model",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "Video",
    "VideoClient",
    "VideoFailed",
    "VideoStatus",
    "VideogenError",
    "from_rpc_error",
    "is_terminal",
    "model_to_dict",
    "raise_for_status",
    "status_name",
    "video_to_dict",
]
