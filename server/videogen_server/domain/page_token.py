"""List's page tokens (issue 12): opaque to callers, readable only by the service, and bound to who asked
and what they asked for. Pure: no I/O (the key comes from the caller of these functions).

A token is urlsafe base64 (no padding) of ``payload || tag``: the payload is a version byte and the
ListCursor (create_time in microseconds since the epoch, and the id), the tag is HMAC-SHA256 over a
domain-separation label, the caller, the canonical filter (domain/listing.py) and the payload. So a token
changed in any bit, one issued to another caller, or one issued for another filter fails the check: each is
INVALID_ARGUMENT on `page_token`, and no token ever makes the store read anything but the caller's own
index. The cursor inside is not secret (it names the caller's own video), only unforgeable.

The key is the same on every replica and survives restarts (the store keeps it: `VideoStore.secret`), so
a token issued by one replica works on another, and after a deploy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import struct
from datetime import UTC, datetime, timedelta
from typing import Final

from videogen_server.domain.listing import ListCursor
from videogen_server.errors import FieldViolation, InvalidArgument

_VERSION: Final = 1
_LABEL: Final = b"videogen.v1.List page_token\x00"
_TAG_BYTES: Final = 32  # the whole SHA-256 tag: tokens stay short anyway (~100 characters)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_HEAD: Final = struct.Struct(">Bq")  # version, create_time in microseconds since the epoch
_MAX_TOKEN_CHARS: Final = 512


def _invalid(problem: str) -> InvalidArgument:
    return InvalidArgument(
        f"page_token is not valid: {problem}",
        [
            FieldViolation(
                "page_token",
                "must be a next_page_token returned to this caller for the same filter, unchanged",
            )
        ],
    )


def _tag(key: bytes, caller: str, filter_text: str, payload: bytes) -> bytes:
    # The caller and the filter are framed by JSON (an unambiguous encoding of two strings), so no pair of
    # different (caller, filter) values can produce the same MAC input.
    bound = json.dumps([caller, filter_text], ensure_ascii=False).encode()
    message = _LABEL + struct.pack(">I", len(bound)) + bound + payload
    return hmac.new(key, message, hashlib.sha256).digest()


def _micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_token(key: bytes, caller: str, filter_text: str, cursor: ListCursor) -> str:
    """The next_page_token resuming after `cursor`, for `caller` and the canonical `filter_text`."""
    payload = _HEAD.pack(_VERSION, _micros(cursor.create_time)) + cursor.id.encode()
    raw = payload + _tag(key, caller, filter_text, payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(key: bytes, caller: str, filter_text: str, token: str) -> ListCursor:
    """The cursor in `token`, once its tag proves it was issued by this service to `caller` for
    `filter_text`; InvalidArgument on `page_token` otherwise (the same answer whatever is wrong with it, so
    a caller learns nothing from probing)."""
    if len(token) > _MAX_TOKEN_CHARS:
        raise _invalid("too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("not base64") from None
    # One spelling per token: base64 lets the last character's unused bits vary without changing the
    # bytes, and a token changed in any character must be refused, not silently read the same.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        raise _invalid("not in the form it was issued")
    if len(raw) < _HEAD.size + _TAG_BYTES:
        raise _invalid("too short")
    payload, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(key, caller, filter_text, payload)):
        raise _invalid("altered, or issued to another caller or for another filter")
    version, micros = _HEAD.unpack_from(payload)
    if version != _VERSION:  # pragma: no cover - only this version was ever issued
        raise _invalid("unknown version")
    try:
        video_id = payload[_HEAD.size :].decode()
        create_time = _EPOCH + timedelta(microseconds=micros)
    except (UnicodeDecodeError, OverflowError):  # pragma: no cover - we signed it: it is what we wrote
        raise _invalid("unreadable") from None
    return ListCursor(create_time, video_id)
