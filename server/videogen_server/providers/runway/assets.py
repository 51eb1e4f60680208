"""Which asset URIs we forward to Runway (runway-api.md §6, design §4 "Input rules").

Only three forms ever leave the service:
- ``https://`` on a domain name (never an IP literal), 13..2048 characters;
- ``runway://`` upload URIs, 13..5000 characters;
- ``data:<type>/<subtype>[;param=value]*;base64,<payload>`` whose top-level type matches the field
  (image fields take images, video fields take videos; a field of no known kind, such as an unknown
  provider option, takes an image, a video or an audio), at most 5 MiB of characters, valid base64.

Everything else (http://, file:, javascript:, whitespace, control characters, credentials in the URL,
bracketed IPv6, decimal/hex IPv4 tricks) is refused locally. Runway's own fetcher would refuse most of
these too, but we never want to hand it a URL that points into a private network.

Every check is a length test first, then C-speed work (regexes, ``str.isprintable``): no per-character
Python loop, so a request holding many URIs cannot stall the event loop (issue 8 item 5).
"""

from __future__ import annotations

import enum
import re

HTTPS_MIN, HTTPS_MAX = 13, 2048
RUNWAY_MIN, RUNWAY_MAX = 13, 5000
DATA_URI_MAX = 5 * 1024 * 1024  # 5 MiB of characters (the encoded form), runway-api.md §6


class AssetKind(enum.StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"


# What a field of no known kind takes (check_asset_uri(uri, None)): any of the media kinds.
_ANY_MEDIA = frozenset(k.value for k in AssetKind)


_AUTHORITY = re.compile(r"(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD = re.compile(r"(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})")
_DATA = re.compile(
    r"data:(?P<type>[A-Za-z]+)/(?P<subtype>[A-Za-z0-9.+-]+)"
    r"(?P<params>(?:;[A-Za-z0-9._-]+=[A-Za-z0-9._+-]+)*);base64,",
)
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _has_forbidden_chars(uri: str) -> bool:
    """Whitespace, control, format, surrogate, private-use or unassigned characters anywhere in the URI.

    That set is exactly Unicode's "Other" (C*) and "Separator" (Z*) categories: ``str.isprintable`` is
    False for all of them but the ASCII space, and it runs in C (a Python loop over each character of
    up to 5,000 characters per URI is what stalled the loop)."""
    return " " in uri or not uri.isprintable()


def _check_host(host: str) -> str | None:
    labels = host.split(".")
    if len(labels) < 2:
        return "must be on a domain name with a top-level domain (e.g. https://example.com/...)"
    if not all(_LABEL.fullmatch(label) for label in labels):
        return "has an invalid host name"
    if not _TLD.fullmatch(labels[-1]):
        # An all-numeric (or hex) last label means an IPv4 literal in one of its many spellings.
        return "must be on a domain name, not an IP address"
    return None


def _check_https(uri: str) -> str | None:
    if not HTTPS_MIN <= len(uri) <= HTTPS_MAX:
        return f"https URL must be {HTTPS_MIN} to {HTTPS_MAX} characters long"
    rest = uri[len("https://") :]
    end = len(rest)
    for sep in "/?#":
        idx = rest.find(sep)
        if idx != -1:
            end = min(end, idx)
    authority = rest[:end]
    if "@" in authority:
        return "must not carry credentials (user@host)"
    if authority.startswith("["):
        return "must be on a domain name, not an IP address"
    m = _AUTHORITY.fullmatch(authority)
    if m is None:
        return "has an invalid host"
    port = m.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return "has an invalid port"
    if "\\" in rest:
        return "must not contain backslashes"
    return _check_host(m.group("host"))


def _check_data(uri: str, kind: AssetKind | None) -> str | None:
    if len(uri) > DATA_URI_MAX:
        return f"data URI must be at most {DATA_URI_MAX} characters (5 MiB); use a runway:// upload instead"
    wanted = kind.value if kind is not None else "<image|video|audio>"
    m = _DATA.match(uri)
    if m is None:
        return f"data URI must be data:{wanted}/<subtype>;base64,<data>"
    media = m.group("type").lower()
    if kind is not None and media != kind.value:
        return f"data URI must have a {kind.value}/* media type (got {media[:32]}/...)"
    if kind is None and media not in _ANY_MEDIA:
        return f"data URI must have an image/*, video/* or audio/* media type (got {media[:32]}/...)"
    payload = uri[m.end() :]
    # A cheap validity check (charset, padding, length), no decoding of up to 5 MiB needed.
    if not payload or len(payload) % 4 != 0 or _B64.fullmatch(payload) is None:
        return "data URI payload is not valid base64"
    return None


def check_asset_uri(uri: str, kind: AssetKind | None) -> str | None:
    """Return None if ``uri`` may be forwarded to Runway for a field of ``kind``, else what is wrong.

    ``kind`` None: a field whose media kind we do not know (an unknown provider option); the same rules,
    with a data URI of any media kind."""
    if not uri:
        return "must not be empty"
    if uri.startswith("data:"):
        # Checked by strict regexes (no per-character Python loop over up to 5 MiB).
        return _check_data(uri, kind)
    if len(uri) > RUNWAY_MAX:
        return "is too long"
    if _has_forbidden_chars(uri):
        return "must not contain whitespace or control characters"
    if uri.startswith("https://"):
        return _check_https(uri)
    if uri.startswith("runway://"):
        if not RUNWAY_MIN <= len(uri) <= RUNWAY_MAX:
            return f"runway:// URI must be {RUNWAY_MIN} to {RUNWAY_MAX} characters long"
        return None
    return "must be an https:// URL on a domain name, a runway:// upload URI or a base64 data: URI"
