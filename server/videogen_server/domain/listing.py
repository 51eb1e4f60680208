"""Listing a caller's videos (List, issue 12): what may be asked for and where a page resumes. Pure: no I/O.

The order is newest first: `create_time` descending, then `id` descending (ids break ties between videos
created in the same microsecond). A page resumes strictly after the last video of the previous page
(`ListCursor`), so videos created while a caller pages through sort before the first page and never shift
later pages: no video is skipped or repeated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ListQuery:
    """Which of a caller's videos a List returns (the parsed `filter`). None: no condition on that field.

    `status` is the status as callers see it: QUEUED also matches records still CREATING (shown as QUEUED)."""

    status: VideoStatus | None = None
    model: str | None = None


@dataclass(frozen=True)
class ListCursor:
    """The last video of the previous page: the next page holds only videos sorting after it (older, or
    as old with a smaller id)."""

    create_time: datetime
    id: str


# How many of a caller's index entries one page may examine when a filter skips some: a List page costs at
# most this many entries (plus one) whatever the filter, so a caller with a million videos and a filter that
# matches none pays a bounded amount per page, not a walk over all of them. A page that runs out of budget
# returns what it matched (maybe nothing) with a next_page_token that resumes where the walk stopped; the
# proto says so ("a page may hold fewer ... without being the last").
SCAN_BUDGET = 2000


@dataclass(frozen=True)
class ListPage:
    """What a store's `list_page` found.

    `records`: the matching videos, newest first. `scanned_to`: when the walk stopped on its scan budget
    with entries still after it, the last entry it examined (resume strictly after it); None when the walk
    ended on its `limit` of matches or at the end of the caller's index."""

    records: list[VideoRecord]
    scanned_to: ListCursor | None = None


def matches(query: ListQuery, record: VideoRecord) -> bool:
    """Whether `record` is one `query` asks for: one definition for every engine's filter (each store checks
    the same two fields, as this says)."""
    if query.model is not None and record.model != query.model:
        return False
    if query.status is None:
        return True
    return record.status in statuses_of(query.status)


def statuses_of(status: VideoStatus) -> tuple[VideoStatus, ...]:
    """The stored statuses a status filter matches: QUEUED also matches CREATING, which callers are shown
    as QUEUED (api/convert.py)."""
    if status is VideoStatus.QUEUED:
        return (VideoStatus.QUEUED, VideoStatus.CREATING)
    return (status,)


def cursor_of(record: VideoRecord) -> ListCursor:
    return ListCursor(record.create_time, record.id)


def page_size_of(requested: int) -> int:
    """The page size a request's `page_size` means: 0 -> 50, more than 1000 -> 1000, negative refused."""
    if requested < 0:
        raise InvalidArgument(
            "page_size must not be negative",
            [FieldViolation("page_size", f"must be 0 (meaning {DEFAULT_PAGE_SIZE}) or more")],
        )
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


# --- the filter: a subset of AIP-160 -------------------------------------------------------------------

SUPPORTED_FILTER = (
    'status = COMPLETED (any status name, with or without the VIDEO_STATUS_ prefix), model = "gen4.5", '
    "joined by AND"
)
_MAX_FILTER_CHARS = 1000

# Tokens: a double-quoted string (no escapes: model ids have no quotes), a word, "=", or any other single
# character (which the parser then refuses, by name).
_TOKEN = re.compile(r'\s*(?:(?P<string>"[^"\\]*")|(?P<word>[A-Za-z0-9_.\-]+)|(?P<op>=)|(?P<other>\S))')

# The statuses a caller may filter on: the public ones (CREATING is shown as QUEUED, so not a name here).
_PUBLIC_STATUSES = {s.value: s for s in VideoStatus if s is not VideoStatus.CREATING}


def _refuse(problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"filter: {problem}; supported: {SUPPORTED_FILTER}",
        [FieldViolation("filter", f"{problem}; supported: {SUPPORTED_FILTER}")],
    )


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches any non-space character
            raise _refuse("unreadable filter")
        kind = m.lastgroup or "other"
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def parse_filter(text: str) -> ListQuery:
    """The ListQuery a request's `filter` asks for. Supported: ``status = NAME`` (a VideoStatus name, with
    or without the ``VIDEO_STATUS_`` prefix, any case; quoted or not) and ``model = "id"`` (quoted, or a
    bare word), each at most once, joined by ``AND``; whitespace anywhere between. Anything else
    (OR, NOT, parentheses, other fields or operators) is InvalidArgument on `filter`, naming what is
    supported."""
    if len(text) > _MAX_FILTER_CHARS:
        raise _refuse(f"longer than {_MAX_FILTER_CHARS} characters")
    tokens = _tokens(text)
    status: VideoStatus | None = None
    model: str | None = None
    seen: set[str] = set()
    i = 0
    while i < len(tokens):
        if i > 0:
            kind, value = tokens[i]
            if (kind, value) != ("word", "AND"):
                raise _refuse(f"expected AND, got {value!r}")
            i += 1
        term = tokens[i : i + 3]
        if len(term) < 3 or term[0][0] != "word" or term[1] != ("op", "=") or term[2][0] == "other":
            shown = " ".join(v for _, v in term) or "nothing"
            raise _refuse(f"expected a condition like FIELD = VALUE, got {shown!r}")
        (_, field), _, (vkind, raw) = term
        value = raw[1:-1] if vkind == "string" else raw
        if field in seen:
            raise _refuse(f"{field} is given more than once")
        seen.add(field)
        if field == "status":
            name = value.upper().removeprefix("VIDEO_STATUS_")
            if name not in _PUBLIC_STATUSES:
                raise _refuse(f"unknown status {value!r} (one of {', '.join(sorted(_PUBLIC_STATUSES))})")
            status = _PUBLIC_STATUSES[name]
        elif field == "model":
            if not value:
                raise _refuse("model must not be empty")
            model = value
        else:
            raise _refuse(f"unknown field {field!r}")
        i += 3
    return ListQuery(status=status, model=model)


def canonical_filter(query: ListQuery) -> str:
    """One spelling per query: what a page token is bound to, so that ``status = COMPLETED`` and
    ``status=VIDEO_STATUS_COMPLETED`` share tokens and another filter does not."""
    parts = []
    if query.status is not None:
        parts.append(f"status={query.status.value}")
    if query.model is not None:
        parts.append(f"model={json.dumps(query.model)}")
    return " AND ".join(parts)
