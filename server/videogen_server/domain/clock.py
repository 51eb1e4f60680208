"""Time as the service keeps it: aware datetimes in UTC, written as ISO-8601.

One reader (`parse_time`) for every timestamp the service reads back, from its own store or from Runway, so
that a malformed timestamp fails the same way wherever it comes from; a caller that tolerates one (Runway's
optional `createdAt`) catches the ValueError itself.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """ISO-8601 in UTC (``2025-01-02T03:04:05.123456+00:00``); a naive datetime is taken to be UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def parse_time(text: str) -> datetime:
    """An ISO-8601 timestamp (what `format_time` writes, or Runway's ``2026-08-11T06:12:01.171Z``) as an
    aware datetime: a naive one is taken to be UTC, as the service uses UTC throughout.

    Raises ValueError when `text` is not ISO-8601."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
