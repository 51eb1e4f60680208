"""Ids are UUIDs, ours (a video) and Runway's (a task): one parser for both.

Callers differ only in what they accept: a caller's video id may come in any spelling `uuid.UUID` reads
(braces, ``urn:uuid:``, upper case) and is used in its canonical spelling from then on; a task id goes
verbatim into a Runway URL path, so it must already be spelled canonically (any case).
"""

from __future__ import annotations

import uuid


def parse_uuid(text: object) -> str | None:
    """The canonical spelling (lower case, 8-4-4-4-12) of the UUID `text` spells, or None if it is none."""
    if not isinstance(text, str):
        return None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def is_canonical_uuid(text: object) -> bool:
    """Whether `text` is a UUID already in its canonical spelling (8-4-4-4-12 hex digits, either case): safe
    to put verbatim in a URL path."""
    return isinstance(text, str) and parse_uuid(text) == text.lower()
