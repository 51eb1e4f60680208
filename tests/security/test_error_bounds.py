"""A status quoting hostile input stays small enough for grpc's trailers (16 KiB by default on clients)."""

from __future__ import annotations

from videogen_server import errors
from videogen_server.api.status import to_status


def test_statuses_are_bounded_whatever_they_quote() -> None:
    huge = "\u00e9" * 100_000  # percent-encoded in grpc-message: the worst case per character
    exc = errors.InvalidArgument(
        huge,
        [errors.FieldViolation(huge, huge) for _ in range(1000)],
        metadata={"request_id": huge, huge: "x"},
    )
    status = to_status(exc)
    trailers = sum(len(k) + len(v) for k, v in status.trailing_metadata)
    assert len(status.details) <= 512
    assert trailers < 12 * 1024, trailers
    not_found = to_status(errors.NotFound(huge))
    assert sum(len(v) for _, v in not_found.trailing_metadata) < 12 * 1024
