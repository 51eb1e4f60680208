"""List's pure parts (issue 12): the AIP-160 filter subset, the page size rules and the signed page token."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from videogen_server import errors
from videogen_server.domain.listing import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    ListCursor,
    ListQuery,
    canonical_filter,
    page_size_of,
    parse_filter,
)
from videogen_server.domain.page_token import decode_token, encode_token
from videogen_server.domain.video import VideoStatus

KEY = bytes(range(32))
CURSOR = ListCursor(
    datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC), "0b7e8e0e-3c1a-4a55-9d3e-5f7a1c2b9d10"
)


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("", ListQuery()),
        ("   ", ListQuery()),
        ("status = COMPLETED", ListQuery(status=VideoStatus.COMPLETED)),
        ("status=VIDEO_STATUS_COMPLETED", ListQuery(status=VideoStatus.COMPLETED)),
        ('status = "FAILED"', ListQuery(status=VideoStatus.FAILED)),
        ("status = video_status_in_progress", ListQuery(status=VideoStatus.IN_PROGRESS)),
        ('model = "gen4.5"', ListQuery(model="gen4.5")),
        ("model=gen4_turbo", ListQuery(model="gen4_turbo")),
        (
            '  model="gen4.5"   AND\tstatus = QUEUED ',
            ListQuery(status=VideoStatus.QUEUED, model="gen4.5"),
        ),
    ],
)
def test_the_supported_filters_parse(text: str, query: ListQuery) -> None:
    assert parse_filter(text) == query


@pytest.mark.parametrize(
    "text",
    [
        "status = COMPLETED OR status = FAILED",
        'status = COMPLETED and model = "x"',
        "NOT status = COMPLETED",
        "(status = COMPLETED)",
        "status != COMPLETED",
        "status: COMPLETED",
        "status = CREATING",  # shown as QUEUED: not a status callers see
        "status = UNSPECIFIED",
        "status = DONE",
        'owner = "bob"',
        'prompt = "x"',
        'model = ""',
        "status = COMPLETED AND status = FAILED",
        "status = COMPLETED AND",
        "AND status = COMPLETED",
        "status =",
        "status",
        'model = "unterminated',
        "x" * 2000,
    ],
)
def test_anything_else_is_invalid_argument_on_filter_naming_what_is_supported(text: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        parse_filter(text)
    [violation] = caught.value.violations
    assert violation.field == "filter"
    assert 'model = "gen4.5"' in violation.description and "AND" in violation.description


def test_equivalent_filters_share_one_canonical_spelling() -> None:
    a = canonical_filter(parse_filter('status = COMPLETED AND model = "gen4.5"'))
    b = canonical_filter(parse_filter("model=gen4.5 AND status=VIDEO_STATUS_COMPLETED"))
    assert a == b == 'status=COMPLETED AND model="gen4.5"'
    assert canonical_filter(parse_filter("")) == ""
    assert canonical_filter(parse_filter("status = FAILED")) != a


@pytest.mark.parametrize(
    ("asked", "size"),
    [(0, DEFAULT_PAGE_SIZE), (1, 1), (10, 10), (1000, 1000), (1001, MAX_PAGE_SIZE), (2**31 - 1, 1000)],
)
def test_page_sizes(asked: int, size: int) -> None:
    assert page_size_of(asked) == size


def test_a_negative_page_size_is_invalid_argument_on_page_size() -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        page_size_of(-1)
    assert [v.field for v in caught.value.violations] == ["page_size"]


def test_a_token_round_trips_for_its_caller_and_filter() -> None:
    token = encode_token(KEY, "alice", "status=COMPLETED", CURSOR)
    assert token.isascii() and "=" not in token and "+" not in token and "/" not in token
    assert decode_token(KEY, "alice", "status=COMPLETED", token) == CURSOR
    # Opaque to callers in the sense that matters: the caller's name is not in it.
    assert b"alice" not in base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _refused(key: bytes, caller: str, filter_text: str, token: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        decode_token(key, caller, filter_text, token)
    assert [v.field for v in caught.value.violations] == ["page_token"]


def test_a_token_for_another_caller_filter_or_key_is_refused() -> None:
    token = encode_token(KEY, "alice", "", CURSOR)
    _refused(KEY, "bob", "", token)
    _refused(KEY, "alice", "status=COMPLETED", token)
    _refused(bytes(32), "alice", "", token)
    # The framing is unambiguous: a caller name that swallows the filter does not collide.
    _refused(KEY, "alice\x00", "", encode_token(KEY, "alice", "\x00", CURSOR))


def test_every_changed_character_of_a_token_is_refused() -> None:
    token = encode_token(KEY, "alice", "", CURSOR)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, ch in enumerate(token):
        other = alphabet[(alphabet.index(ch) + 1) % len(alphabet)]
        _refused(KEY, "alice", "", token[:i] + other + token[i + 1 :])
    for bad in ("", "x", "!!!!", token[:-4], token + "AAAA", "A" * 600, token + "="):
        _refused(KEY, "alice", "", bad)
