"""The media types an upload may be (runway-api.md §6: images JPEG/PNG/WebP; video containers), told from a
file's first bytes, never from what the caller says: a name or a declared type that disagrees with the bytes
is refused (a `.png` that is really something else would fail at Runway, after an upload and maybe a paid
create). Pure functions, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# Bytes needed to tell every supported type apart (an ISO-BMFF `ftyp` box with a few compatible brands).
SNIFF_BYTES: Final = 64


@dataclass(frozen=True)
class MediaType:
    mime: str
    kind: str  # "image" or "video": the kind of Generate field that takes it
    extensions: tuple[str, ...]  # lower case, without the dot; the first is the one we name files with


PNG: Final = MediaType("image/png", "image", ("png",))
JPEG: Final = MediaType("image/jpeg", "image", ("jpg", "jpeg", "jpe"))
WEBP: Final = MediaType("image/webp", "image", ("webp",))
MP4: Final = MediaType("video/mp4", "video", ("mp4", "m4v"))
MOV: Final = MediaType("video/quicktime", "video", ("mov", "qt"))
WEBM: Final = MediaType("video/webm", "video", ("webm",))
SUPPORTED: Final = (PNG, JPEG, WEBP, MP4, MOV, WEBM)
SUPPORTED_NAMES: Final = "PNG, JPEG, WebP, MP4, MOV, WebM"

_ALIASES: Final = {"image/jpg": JPEG, "image/pjpeg": JPEG, "video/x-m4v": MP4, "video/mov": MOV}
_BY_MIME: Final = {**{t.mime: t for t in SUPPORTED}, **_ALIASES}
_BY_EXTENSION: Final = {ext: t for t in SUPPORTED for ext in t.extensions}
# ISO-BMFF major/compatible brands of MP4 files (ISO 14496-12/-14, and what encoders write in practice).
_MP4_BRANDS: Final = frozenset(
    {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9", b"mp41", b"mp42"}
    | {b"avc1", b"M4V ", b"M4VH", b"M4VP", b"dash", b"mmp4", b"MSNV", b"NDAS", b"f4v ", b"av01", b"hvc1"}
)
_QT_BRAND: Final = b"qt  "
_EBML: Final = b"\x1a\x45\xdf\xa3"
_TYPE_RE: Final = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


def sniff(head: bytes) -> MediaType | None:
    """The supported type whose signature `head` (a file's first SNIFF_BYTES bytes, or all of a shorter
    file) starts with, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(_EBML):
        # Matroska and WebM share the EBML header; a DocType of "matroska" is not WebM.
        return None if b"matroska" in head else WEBM
    if head[4:8] == b"ftyp":
        return _iso_bmff(head)
    return None


def _iso_bmff(head: bytes) -> MediaType | None:
    """MOV for QuickTime's brand, MP4 for an MP4 brand: the major brand first, then the compatible ones."""
    box_size = int.from_bytes(head[:4], "big")
    end = min(len(head), box_size) if box_size >= 16 else len(head)
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    for brand in brands:
        if brand == _QT_BRAND:
            return MOV
        if brand in _MP4_BRANDS:
            return MP4
    return None


def from_content_type(value: str) -> MediaType | None:
    """A declared media type (parameters and case ignored), or None when it is not a supported one."""
    base = value.split(";", 1)[0].strip().lower()
    return _BY_MIME.get(base)


def is_media_type(value: str) -> bool:
    """Whether `value` looks like a media type at all (type/subtype)."""
    return _TYPE_RE.fullmatch(value.split(";", 1)[0].strip().lower()) is not None


def extension(filename: str) -> str:
    """The extension of `filename`, lower case without the dot ("" when it has none)."""
    stem, dot, ext = filename.rpartition(".")
    return ext.lower() if dot and stem else ""


def from_extension(filename: str) -> MediaType | None:
    return _BY_EXTENSION.get(extension(filename))
