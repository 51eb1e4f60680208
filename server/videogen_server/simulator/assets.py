"""Asset URI rules (runway-api.md §6): https on a domain name, runway:// uploads, or base64 data URIs."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from videogen_server.simulator.validation import Issues, Path

Media = Literal["image", "video"]

HTTPS_MIN, HTTPS_MAX = 13, 2048
RUNWAY_MIN, RUNWAY_MAX = 13, 5000
DATA_MAX: Final[dict[Media, int]] = {"image": 5 * 1024 * 1024, "video": 16 * 1024 * 1024}
_DATA_RE: Final = re.compile(
    r"^data:(?P<type>[A-Za-z0-9.+-]+)/(?P<sub>[A-Za-z0-9.+-]+)(?P<params>(;[^,;]*)*),"
)
_B64_RE: Final = re.compile(r"^[A-Za-z0-9+/\r\n]*={0,2}$")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def check_uri(issues: Issues, value: Any, path: Path, media: Media) -> None:
    """Record an issue on ``path`` when ``value`` is not an acceptable ``media`` asset URI."""
    if not isinstance(value, str):
        issues.invalid_type(path, "string", value)
        return
    if value.startswith("https://"):
        if not HTTPS_MIN <= len(value) <= HTTPS_MAX:
            issues.add("custom", path, f"HTTPS URLs must be {HTTPS_MIN}-{HTTPS_MAX} characters long")
            return
        try:
            host = urlsplit(value).hostname or ""
        except ValueError:
            host = ""
        if not host:
            issues.add("custom", path, "Invalid URL")
        elif _is_ip_literal(host):
            issues.add("custom", path, "URLs must use a domain name, not an IP address")
        return
    if value.startswith("runway://"):
        if not RUNWAY_MIN <= len(value) <= RUNWAY_MAX:
            issues.add(
                "custom", path, f"Runway upload URIs must be {RUNWAY_MIN}-{RUNWAY_MAX} characters long"
            )
        return
    if value.startswith("data:"):
        _check_data_uri(issues, value, path, media)
        return
    issues.add("custom", path, "Only HTTPS URLs, runway:// upload URIs and data URIs are allowed")


def _check_data_uri(issues: Issues, value: str, path: Path, media: Media) -> None:
    match = _DATA_RE.match(value)
    if match is None:
        issues.add("custom", path, "Invalid data URI")
        return
    if match["type"].lower() != media:
        issues.add(
            "custom", path, f"Unsupported data URI media type: expected {media}/*, got {match['type']}/*"
        )
        return
    if ";base64" not in match["params"].lower():
        issues.add("custom", path, "Data URIs must be base64-encoded")
        return
    if len(value) > DATA_MAX[media]:
        issues.add(
            "too_big",
            path,
            f"Data URI must be at most {DATA_MAX[media]} characters",
            origin="string",
            maximum=DATA_MAX[media],
        )
        return
    payload = value[match.end() :]
    if not payload or not _B64_RE.match(payload):
        issues.add("custom", path, "Invalid base64 data in data URI")
