"""VideoRecord <-> JSON text, the `data` column of the store (and a Redis value, later).

Format decisions:
- datetimes are ISO-8601 in UTC (``2025-01-02T03:04:05.123456+00:00``, domain/clock.py) and come back as
  aware UTC datetimes (the same instant, so they compare equal). A naive datetime is taken to be UTC: the
  service uses UTC throughout.
- enums are stored by value, ``outputs`` as a list of objects (an output's ``archive`` state by value too).
- decoding ignores keys it does not know (a record written by a newer version) and gives missing keys
  their dataclass defaults (a record written by an older version), so adding a field needs no migration.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import typing
from typing import Any

from videogen_server.domain.clock import format_time, parse_time
from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.video import ArchiveState, OutputInfo, VideoRecord, VideoStatus

_DATETIME_FIELDS = frozenset({"create_time", "update_time", "complete_time", "expire_time", "polled_at"})
_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(VideoRecord))


# Decided once, not per record: the fields in declaration order, and which hold enums (stored by value).
_FIELD_ORDER = tuple(f.name for f in dataclasses.fields(VideoRecord))
_ENUM_FIELDS = frozenset(
    name
    for name, hint in typing.get_type_hints(VideoRecord).items()
    if isinstance(hint, type) and issubclass(hint, enum.Enum)
)


def record_to_dict(record: VideoRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _FIELD_ORDER:
        value = getattr(record, name)
        if name in _DATETIME_FIELDS:
            out[name] = None if value is None else format_time(value)
        elif name == "outputs":
            out[name] = [_output_to_dict(o) for o in value]
        elif name in _ENUM_FIELDS:
            out[name] = value.value
        else:
            out[name] = value
    return out


def record_from_dict(data: dict[str, Any]) -> VideoRecord:
    kwargs: dict[str, Any] = {k: v for k, v in data.items() if k in _FIELD_NAMES}
    for name in _DATETIME_FIELDS & kwargs.keys():
        if kwargs[name] is not None:
            kwargs[name] = parse_time(kwargs[name])
    kwargs["mode"] = GenerationMode(kwargs["mode"])
    kwargs["status"] = VideoStatus(kwargs["status"])
    if "outputs" in kwargs:
        kwargs["outputs"] = tuple(_output_from_dict(o) for o in kwargs["outputs"])
    return VideoRecord(**kwargs)


def _output_to_dict(o: OutputInfo) -> dict[str, Any]:
    return {
        "index": o.index,
        "content_type": o.content_type,
        "size_bytes": o.size_bytes,
        "sha256": o.sha256,
        "archive": o.archive.value,
        "lost_reason": o.lost_reason,
    }


def _output_from_dict(o: dict[str, Any]) -> OutputInfo:
    # An output written before issue 11 has no archive keys: PENDING, no digest, no reason (the defaults).
    return OutputInfo(
        index=int(o["index"]),
        content_type=o.get("content_type", ""),
        size_bytes=o.get("size_bytes"),
        sha256=o.get("sha256", ""),
        archive=ArchiveState(o.get("archive", ArchiveState.PENDING.value)),
        lost_reason=o.get("lost_reason", ""),
    )


def encode_record(record: VideoRecord) -> str:
    return json.dumps(record_to_dict(record), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode_record(text: str) -> VideoRecord:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a stored video record must be a JSON object")
    return record_from_dict(data)
