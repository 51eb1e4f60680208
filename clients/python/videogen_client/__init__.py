"""Python client of ``videogen.v1.VideoService``: a sync and an asyncio client, typed errors, resumable
downloads, and the ``videogen`` CLI.

    from videogen_client import VideoClient

    with VideoClient("127.0.0.1:50051") as client:
        video = client.generate("gen4.5", "a cat", seconds=5)
        video = client.wait(video.id)
        if video.status == VideoStatus.VIDEO_STATUS_COMPLETED:
            client.download(video.id, "cat.mp4")
"""

# Names are imported on first use (PEP 562), so that `import videogen_client._console` (the `videogen`
# command's entry point) does not import grpc before it has installed its Ctrl-C handler.
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    __version__: str

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

_ERRORS = (
    "Aborted AlreadyExists Cancelled DataLoss DeadlineExceeded FailedPrecondition Internal "
    "InvalidArgument NotFound OutOfRange PermissionDenied ResourceExhausted Unauthenticated Unavailable "
    "Unimplemented Unknown VideogenError from_rpc_error"
)
_MODELS = (
    "GenerationMode MediaReference Model Video VideoFailed VideoStatus is_terminal model_to_dict "
    "raise_for_status status_name video_to_dict"
)
_WHERE: dict[str, str] = {
    "AsyncVideoClient": ".aio",
    "VideoClient": ".client",
    "RetryPolicy": ".download",
    **dict.fromkeys(_ERRORS.split(), ".errors"),
    **dict.fromkeys(_MODELS.split(), ".models"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("videogen-client")  # its own distribution, released with the server
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _WHERE:
        value = getattr(import_module(_WHERE[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE, "__version__"})


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
