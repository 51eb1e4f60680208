"""Domain errors. Raised by the catalog, the Runway adapter and the use cases; the gRPC layer
(api/status.py) maps each class to one status code with google.rpc details. No gRPC here.

The store raises two of these: StoreUnavailable (a shared store that cannot be reached now: UNAVAILABLE,
retryable) and ActiveLimitReached (a capped `claim` refused; the use case reports it); otherwise builtin
errors (KeyError for an unknown id in `save`, ValueError for a duplicate id or a changed owner/request_id,
RuntimeError when not open or closed; see services/ports.py), and its engine's own (sqlite3.Error for a
locked or broken file). Those mean a bug or a broken store, and reach the caller as INTERNAL, logged."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str  # the request field, in the proto's snake_case (e.g. "seconds", "references[0].uri")
    description: str


class VideogenError(Exception):
    """Base class. `reason` becomes ErrorInfo.reason (UPPER_SNAKE, stable)."""

    reason = "INTERNAL"

    def __init__(self, message: str, *, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = metadata or {}


class InvalidArgument(VideogenError):
    """The caller's request is invalid (our validation or Runway's 400 validation)."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        violations: list[FieldViolation],
        *,
        reason: str = "INVALID_ARGUMENT",
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.violations = violations
        self.reason = reason


class NotFound(VideogenError):
    reason = "VIDEO_NOT_FOUND"

    def __init__(self, resource_name: str, message: str = "") -> None:
        super().__init__(message or f"video {resource_name!r} not found", metadata={"id": resource_name})
        self.resource_name = resource_name


class AlreadyExists(VideogenError):
    reason = "REQUEST_ID_REUSED"


class FailedPrecondition(VideogenError):
    reason = "FAILED_PRECONDITION"

    def __init__(self, message: str, *, reason: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, metadata=metadata)
        self.reason = reason


class OutOfRange(VideogenError):
    reason = "OFFSET_OUT_OF_RANGE"


class Unauthenticated(VideogenError):
    """The caller sent no key, or one that is not configured (api/auth.py)."""

    reason = "MISSING_OR_INVALID_CREDENTIALS"


class ResourceExhausted(VideogenError):
    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        reason: str = "RESOURCE_EXHAUSTED",
        retry_after: float | None = None,
        subject: str = "",
        violations: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after
        self.subject = subject  # the exhausted quota (QuotaFailure.violations[].subject)
        # Several exhausted quotas, (subject, description) each: e.g. one per Runway key (issue 12). When
        # given, they are the QuotaFailure's violations instead of (subject, message).
        self.violations = violations or []


class ActiveLimitReached(VideogenError):
    """Raised by the store's `claim(record, max_active=N)`: the owner already has `limit` videos not in a
    terminal state, so nothing was written (services/ports.py). The use case turns it into
    ResourceExhausted naming the configuration variable (services/videos.py)."""

    reason = "ACTIVE_VIDEOS_LIMIT_EXCEEDED"

    def __init__(self, owner: str, limit: int) -> None:
        super().__init__(f"the caller already has {limit} unfinished videos (limit {limit})")
        self.owner = owner
        self.limit = limit


class DeadlineExceeded(VideogenError):
    reason = "DEADLINE_EXCEEDED"


class StoreUnavailable(VideogenError):
    """The job store (a shared one: Redis) cannot be reached, or cannot persist, right now. Nothing was
    done that the caller needs to undo: a Generate failed here has sent nothing to Runway. Retryable."""

    reason = "STORE_UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: float | None = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ArchiveUnavailable(VideogenError):
    """The output archive (a local directory or an S3-compatible bucket) cannot be read or written right now:
    unreachable, out of space, refusing (S3 5xx), or not there at all. At start-up it is a configuration
    error (nobody's video is accepted that could not be kept); later it is retryable: a copy is tried again,
    a read falls back to Runway while its URL lives."""

    reason = "ARCHIVE_UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: float | None = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ArchiveObjectMissing(VideogenError):
    """The archive has no object under that key (never written, deleted by retention, or lost by the
    storage). Whoever reads decides what it means: the relay falls back to Runway while its URL lives."""

    reason = "ARCHIVE_OBJECT_MISSING"


# --- Upstream (Runway) failures -------------------------------------------------------------------


class UpstreamError(VideogenError):
    """Base of everything that went wrong talking to Runway."""

    reason = "UPSTREAM_ERROR"


class UpstreamUnavailable(UpstreamError):
    """Runway is unreachable, overloaded (5xx) or over our daily cap (429). Retryable by the caller."""

    reason = "UPSTREAM_UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        reason: str = "UPSTREAM_UNAVAILABLE",
        retry_after: float | None = None,
        http_status: int | None = None,
    ) -> None:
        meta = {"http_status": str(http_status)} if http_status is not None else {}
        super().__init__(message, metadata=meta)
        self.reason = reason
        self.retry_after = retry_after
        self.http_status = http_status


class UpstreamOutcomeUnknown(UpstreamUnavailable):
    """A paid create was sent and no answer came back (5xx, timeout, reset after sending).
    Runway may or may not have started the task; it is never retried automatically."""

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message, reason="UPSTREAM_OUTCOME_UNKNOWN", http_status=http_status)


class UpstreamRejected(InvalidArgument):
    """Runway answered 400 with a validation error: the request (the caller's input) is invalid."""

    def __init__(self, message: str, violations: list[FieldViolation]) -> None:
        super().__init__(message, violations, reason="UPSTREAM_REJECTED")


class UpstreamCredits(UpstreamError):
    """Runway answered 400 "not enough credits": our account's problem, not the caller's input."""

    reason = "UPSTREAM_INSUFFICIENT_CREDITS"


class UpstreamAuth(UpstreamError):
    """Runway answered 401/403: the service's API key is bad. Never blamed on the caller."""

    reason = "UPSTREAM_AUTH_FAILED"


class UpstreamNotFound(UpstreamError):
    """Runway answered 404 for a task (unknown, deleted or cancelled)."""

    reason = "UPSTREAM_TASK_NOT_FOUND"


class OutputExpired(UpstreamError):
    """The signed output URL no longer works (403/404/410): re-read the task for a fresh one."""

    reason = "UPSTREAM_OUTPUT_EXPIRED"


class UpstreamProtocolError(UpstreamError):
    """Runway's answer could not be understood (malformed JSON, unexpected shape)."""

    reason = "UPSTREAM_BAD_RESPONSE"


def key_refused_create(exc: BaseException) -> bool:
    """Whether a failed create proves that no task was made because of the key it was sent with: Runway's
    no-credits answer (that key, every model) or a 429 (that key's daily cap for the model). Anything else
    (a 5xx, a timeout, an unknown outcome) may have started a paid task: never sent again."""
    if isinstance(exc, UpstreamCredits):
        return True
    return (
        isinstance(exc, UpstreamUnavailable)
        and not isinstance(exc, UpstreamOutcomeUnknown)
        and exc.http_status == 429
    )
