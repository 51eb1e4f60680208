"""Domain errors -> gRPC status codes with google.rpc details (design §3).

Every status carries exactly one ErrorInfo (domain `videogen`) plus the detail that helps the caller act:
BadRequest, ResourceInfo, RetryInfo."""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from videogen_server import errors

DOMAIN = "videogen"

_CODES: list[tuple[type[errors.VideogenError], int]] = [
    # Order matters: subclasses first.
    (errors.UpstreamRejected, code_pb2.INVALID_ARGUMENT),
    (errors.InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (errors.NotFound, code_pb2.NOT_FOUND),
    (errors.AlreadyExists, code_pb2.ALREADY_EXISTS),
    (errors.FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (errors.OutOfRange, code_pb2.OUT_OF_RANGE),
    (errors.Unauthenticated, code_pb2.UNAUTHENTICATED),
    (errors.ResourceExhausted, code_pb2.RESOURCE_EXHAUSTED),
    (errors.DeadlineExceeded, code_pb2.DEADLINE_EXCEEDED),
    (errors.UpstreamUnavailable, code_pb2.UNAVAILABLE),
    (errors.StoreUnavailable, code_pb2.UNAVAILABLE),
    # Our Runway account is out of credits: not the caller's input, and retrying will not help until
    # someone tops it up.
    (errors.UpstreamCredits, code_pb2.FAILED_PRECONDITION),
    # A bad Runway key is our fault, never the caller's: INTERNAL, logged loudly by the adapter.
    (errors.UpstreamAuth, code_pb2.INTERNAL),
    (errors.OutputExpired, code_pb2.UNAVAILABLE),
    (errors.UpstreamNotFound, code_pb2.NOT_FOUND),
    (errors.UpstreamProtocolError, code_pb2.UNAVAILABLE),
    (errors.UpstreamError, code_pb2.UNAVAILABLE),
]

_PUBLIC_MESSAGES: dict[type[errors.VideogenError], str] = {
    errors.UpstreamAuth: (
        "the service could not authenticate with its video provider; operators have been alerted"
    ),
}


# A status travels in HTTP/2 trailers, which clients cap (grpc: 16 KiB by default). Messages and details
# may quote the caller's input; bounding each piece keeps a hostile request from turning its refusal into
# a transport error (RESOURCE_EXHAUSTED "metadata too large") instead of INVALID_ARGUMENT.
_TEXT_MAX = 512
_VIOLATIONS_MAX = 10


def _bounded(text: str, limit: int = _TEXT_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def code_for(exc: errors.VideogenError) -> int:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return int(code_pb2.INTERNAL)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _duration(seconds: float) -> duration_pb2.Duration:
    whole = max(0, math.ceil(seconds))
    return duration_pb2.Duration(seconds=whole)


def to_status(exc: errors.VideogenError) -> grpc.Status:
    code = code_for(exc)
    message = _bounded(_PUBLIC_MESSAGES.get(type(exc), exc.message))
    metadata = {_bounded(k, 64): _bounded(str(v), 256) for k, v in exc.metadata.items()}
    details = [
        error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=metadata),
    ]
    if isinstance(exc, errors.InvalidArgument) and exc.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=_bounded(v.field, 128), description=_bounded(v.description, 256)
                    )
                    for v in exc.violations[:_VIOLATIONS_MAX]
                ]
            )
        )
    if isinstance(exc, errors.NotFound):
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type="videogen.v1.Video",
                resource_name=_bounded(exc.resource_name, 256),
                description=message,
            )
        )
    if code == code_pb2.UNAVAILABLE:
        retry_after = getattr(exc, "retry_after", None)
        details.append(error_details_pb2.RetryInfo(retry_delay=_duration(retry_after or 1.0)))
    if isinstance(exc, errors.ResourceExhausted):
        # One violation per exhausted quota (several: one per Runway key, issue 12), else the one named.
        quotas = [(_bounded(s, 128), _bounded(d, 256)) for s, d in exc.violations[:_VIOLATIONS_MAX]] or [
            (exc.subject or exc.reason, exc.message)
        ]
        details.append(
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(subject=subject, description=description)
                    for subject, description in quotas
                ]
            )
        )
        if exc.retry_after is not None:
            details.append(error_details_pb2.RetryInfo(retry_delay=_duration(exc.retry_after)))
    status = status_pb2.Status(code=code, message=message, details=[_pack(d) for d in details])
    result: grpc.Status = rpc_status.to_status(status)
    return result


def simple_status(code: int, reason: str, message: str) -> grpc.Status:
    """A status whose only detail is its ErrorInfo: for refusals that no domain error stands for (an
    undecodable request, an unexpected exception)."""
    status = status_pb2.Status(
        code=code,
        message=message,
        details=[_pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))],
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result


def malformed_request_status() -> grpc.Status:
    """For a request whose bytes do not decode as the method's message. Generic on purpose: the parser's
    own text names internals and may quote the caller's bytes."""
    return simple_status(
        code_pb2.INVALID_ARGUMENT,
        "MALFORMED_REQUEST",
        "the request message could not be decoded (invalid protobuf, UTF-8 or nesting)",
    )


def unimplemented_status() -> grpc.Status:
    """A method the proto declares and this server does not implement (the generated base servicer raises
    NotImplementedError): UNIMPLEMENTED, so that a client built from a newer proto can tell, not INTERNAL."""
    return simple_status(code_pb2.UNIMPLEMENTED, "UNIMPLEMENTED", "this server does not implement the method")


def internal_status() -> grpc.Status:
    """For an exception no domain error stands for. Generic on purpose: its text may name internals or
    quote a secret (it is logged, never sent)."""
    return simple_status(code_pb2.INTERNAL, "INTERNAL", "internal error")
