"""The client's exception hierarchy.

Every client method raises a :class:`VideogenError` subclass, never a raw ``grpc.RpcError``. The error is
built from the call's status (``grpc_status.rpc_status.from_call``) and the ``google.rpc`` details the
server attaches: ``ErrorInfo`` (a stable ``reason``), ``BadRequest`` (field violations), ``RetryInfo``
(``retry_after``) and ``ResourceInfo`` (which resource was not found).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "VideogenError",
    "from_rpc_error",
]

_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.ResourceInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.DebugInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
    error_details_pb2.RequestInfo,
)


class VideogenError(Exception):
    """An RPC failed. ``code`` is the gRPC status code, ``message`` the server's message, ``reason`` the
    ``ErrorInfo.reason`` (empty when the server sent none, e.g. a transport failure) and ``details`` the
    unpacked ``google.rpc`` detail messages (unknown kinds stay packed as ``google.protobuf.Any``).

    Convenience attributes, filled from ``details`` whatever the subclass:
    ``field_violations`` (``[(field, description)]`` from ``BadRequest``), ``retry_after`` (seconds, from
    ``RetryInfo``), ``domain`` / ``metadata`` (from ``ErrorInfo``), ``resource_type`` / ``resource_name``
    (from ``ResourceInfo``).
    """

    default_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        code: grpc.StatusCode | None = None,
        message: str = "",
        reason: str = "",
        details: Sequence[Message] = (),
    ) -> None:
        self.code: grpc.StatusCode = code if code is not None else self.default_code
        self.message = message
        self.details: list[Message] = list(details)
        self.field_violations: list[tuple[str, str]] = []
        self.retry_after: float | None = None
        self.domain = ""
        self.metadata: dict[str, str] = {}
        self.resource_type = ""
        self.resource_name = ""
        info_reason = ""
        for detail in self.details:
            if isinstance(detail, error_details_pb2.BadRequest):
                self.field_violations.extend((v.field, v.description) for v in detail.field_violations)
            elif isinstance(detail, error_details_pb2.RetryInfo):
                delay = detail.retry_delay
                self.retry_after = delay.seconds + delay.nanos / 1e9
            elif isinstance(detail, error_details_pb2.ErrorInfo):
                info_reason = detail.reason
                self.domain = detail.domain
                self.metadata = dict(detail.metadata)
            elif isinstance(detail, error_details_pb2.ResourceInfo):
                self.resource_type = detail.resource_type
                self.resource_name = detail.resource_name
        self.reason = reason or info_reason
        super().__init__(self.__str__())

    @property
    def code_name(self) -> str:
        """The status code's name, e.g. ``INVALID_ARGUMENT``."""
        return self.code.name

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}" if self.message else self.code_name

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code_name}, message={self.message!r}, reason={self.reason!r}, "
            f"field_violations={self.field_violations!r}, retry_after={self.retry_after!r})"
        )


class Cancelled(VideogenError):
    default_code = grpc.StatusCode.CANCELLED


class Unknown(VideogenError):
    default_code = grpc.StatusCode.UNKNOWN


class InvalidArgument(VideogenError):
    """The request is invalid; ``field_violations`` names each bad field and why."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(VideogenError):
    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(VideogenError):
    """No such video (or it belongs to another caller); ``resource_name`` is the id when the server says."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(VideogenError):
    """A ``request_id`` was reused for a different request."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(VideogenError):
    default_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(VideogenError):
    """A quota ran out; ``retry_after`` says when to retry, when known."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(VideogenError):
    """E.g. content asked before the video is COMPLETED, or cancelling a finished video."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(VideogenError):
    default_code = grpc.StatusCode.ABORTED


class OutOfRange(VideogenError):
    default_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(VideogenError):
    default_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(VideogenError):
    default_code = grpc.StatusCode.INTERNAL


class Unavailable(VideogenError):
    """The server or Runway is unreachable; retry later (after ``retry_after`` seconds when known)."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DataLoss(VideogenError):
    """Also raised by the client itself when downloaded content does not match the announced size."""

    default_code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(VideogenError):
    """No or a wrong API key (``--api-key`` / ``VIDEOGEN_API_KEY``)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[VideogenError]] = {
    cls.default_code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def error_class(code: grpc.StatusCode) -> type[VideogenError]:
    """The exception class for a status code (``VideogenError`` itself for codes without one)."""
    return _BY_CODE.get(code, VideogenError)


def make_error(
    code: grpc.StatusCode, message: str, reason: str = "", details: Sequence[Message] = ()
) -> VideogenError:
    """Builds the subclass that matches ``code``."""
    return error_class(code)(code, message, reason, details)


def unpack_details(packed: Iterable[any_pb2.Any]) -> list[Message]:
    """Unpacks the ``google.rpc`` detail messages we know; unknown ones stay as ``Any``."""
    out: list[Message] = []
    for item in packed:
        for detail_type in _DETAIL_TYPES:
            if item.Is(detail_type.DESCRIPTOR):  # type: ignore[arg-type]
                msg = detail_type()
                item.Unpack(msg)
                out.append(msg)
                break
        else:
            out.append(item)
    return out


def _rich_status(err: grpc.RpcError) -> Any:
    """The ``google.rpc.Status`` of a failed call, or None."""
    try:
        return rpc_status.from_call(err)  # type: ignore[arg-type]
    except ValueError:
        # Code or message of the rich status disagree with the call's (e.g. a proxy rewrote the status):
        # still use its details, but trust the call's own code and message.
        trailers: Iterable[tuple[str, str | bytes]] = err.trailing_metadata() or ()  # type: ignore[attr-defined,assignment]
        for key, value in trailers:
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                return status_pb2.Status.FromString(value)
    except Exception:  # a malformed trailer must never hide the original error
        return None
    return None


def from_rpc_error(err: grpc.RpcError) -> VideogenError:
    """Converts a failed call (sync ``grpc.RpcError`` or ``grpc.aio.AioRpcError``) to a ``VideogenError``."""
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    message = details_fn() if callable(details_fn) else None
    if not isinstance(message, str):
        message = str(err)
    details: list[Message] = []
    try:
        status = _rich_status(err)
    except Exception:
        status = None
    if status is not None:
        details = unpack_details(status.details)
        message = message or status.message
    return make_error(code, message, "", details)
