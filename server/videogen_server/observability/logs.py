"""Structured logs: one JSON object per line (`VIDEOGEN_LOG_FORMAT=json`) or plain text (the default).

Every record logged while an RPC runs carries that RPC's request id and method, and the video id and
upstream (Runway) task id once they are known. They live in context variables: the RPC's task sets them
(api/telemetry_interceptor.py, runway/client.py) and `ContextFilter` copies them onto each record, so
nothing has to pass them around. A shared poller gets a context of its own (its video and task).

Secrets never reach a log line: the code never logs them, and as a second line of defence every
registered secret (the Runway key, callers' keys: `register_secret`) is replaced in the formatted text.

Callers control much of what gets logged (ids, models, prompts quoted in errors), often before they are
authenticated. So the context binds only validated values (a video id must be a UUID), and both formatters
bound every message and value; the text formatter also escapes control characters, so that one record is
one line (a traceback's lines are indented under it): no value can forge a line or flood the log.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from videogen_server.config import LOG_FORMATS
from videogen_server.domain.ids import parse_uuid

if TYPE_CHECKING:
    from videogen_server.config import LogSettings

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("videogen_request_id", default="")
rpc_method: contextvars.ContextVar[str] = contextvars.ContextVar("videogen_rpc_method", default="")
video_id: contextvars.ContextVar[str] = contextvars.ContextVar("videogen_video_id", default="")
task_id: contextvars.ContextVar[str] = contextvars.ContextVar("videogen_task_id", default="")

# Record attribute -> context variable. The attribute names are also the JSON keys.
_CONTEXT = {"request_id": request_id, "rpc_method": rpc_method, "video_id": video_id, "task_id": task_id}

_SECRETS: set[str] = set()
_REDACTED = "<redacted>"
# Shorter strings are not redacted: replacing e.g. "a" everywhere would garble every line.
_MIN_SECRET_LENGTH = 8

# Bounds on what one record may carry: a message (after %-formatting), one context or `fields` value, a
# traceback and each of its lines (an exception's message may quote a caller). Enough for every line the
# service writes; a caller's megabyte id is cut.
MESSAGE_MAX = 4096
VALUE_MAX = 256
TRACEBACK_LINE_MAX = 2048
TRACEBACK_MAX = 32 * 1024
# The longest spelling of a video id uuid.UUID accepts ("urn:uuid:{…}"): anything longer is not one.
_UUID_TEXT_MAX = 45

# Characters that would break or disguise a text line -> a visible escape. C0 and C1 controls, DEL, and
# the Unicode line and paragraph separators (some viewers break lines on them).
_NAMED_ESCAPES = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_ESCAPES: dict[int, str] = {
    code: _NAMED_ESCAPES.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)
}


def new_request_id() -> str:
    return secrets.token_hex(8)


def bind_video(value: str) -> None:
    """The video this RPC (or task) is about, from now on in this context. Only a video id (a UUID, bound
    in its canonical spelling) is bound: the raw `id` of a request is the caller's text, often before it
    has been validated or the caller authenticated."""
    canonical = _uuid_or_none(value)
    if canonical and video_id.get() != canonical:
        video_id.set(canonical)


def _uuid_or_none(value: str) -> str | None:
    if not value or len(value) > _UUID_TEXT_MAX:  # the length first: never parse a megabyte
        return None
    return parse_uuid(value)


def bind_task(value: str) -> None:
    """The upstream task id this context talks to Runway about."""
    if value and task_id.get() != value:
        task_id.set(value)


@contextmanager
def rpc_context(method: str, rid: str) -> Iterator[None]:
    """A fresh logging context for one RPC (nothing inherited from an earlier call on the same task)."""
    tokens = [
        (request_id, request_id.set(rid)),
        (rpc_method, rpc_method.set(method)),
        (video_id, video_id.set("")),
        (task_id, task_id.set("")),
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            # A reset from another context (a generator closed elsewhere) fails harmlessly.
            with contextlib.suppress(ValueError):
                var.reset(token)


def register_secret(value: str | None) -> None:
    if value and len(value) >= _MIN_SECRET_LENGTH:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def bounded(value: object, limit: int) -> str:
    """`value` as text of at most `limit` characters (plus a note of what was cut). A secret that straddles
    the cut is redacted first, so no prefix of one survives the truncation."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    window = redact(text[: limit + max(map(len, _SECRETS), default=0)])
    return f"{window[:limit]}\u2026[{len(text)} chars]"


def one_line(value: object, limit: int) -> str:
    """`value` bounded, with every control character escaped: it can never start a line of its own."""
    return bounded(value, limit).translate(_ESCAPES)


class ContextFilter(logging.Filter):
    """Copies the RPC context onto each record (at the call site, where the context variables are)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT.items():
            if not hasattr(record, name):
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the RPC context fields that are set, and
    `exc` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": bounded(record.getMessage(), MESSAGE_MAX),
        }
        for name in _CONTEXT:
            value = getattr(record, name, "")
            if value:
                entry[name] = bounded(value, VALUE_MAX)
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            for key, value in extra.items():
                # Numbers stay numbers; anything else is bounded text (json.dumps escapes controls).
                kept = (
                    value
                    if isinstance(value, bool | int | float) or value is None
                    else bounded(value, VALUE_MAX)
                )
                entry.setdefault(bounded(key, 64), kept)
        if record.exc_info:
            entry["exc"] = bounded(self.formatException(record.exc_info), TRACEBACK_MAX)
        elif record.exc_text:
            entry["exc"] = bounded(record.exc_text, TRACEBACK_MAX)
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """The classic one-line format, with `[rid=… video=… task=…]` appended when an RPC context is set.

    One record is one line whatever its message or values hold: they are bounded and their control
    characters escaped. A traceback follows on lines of its own, each indented, so that only a record's
    first line ever starts with a time stamp (what log shippers split records on)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # logging.Formatter.format, with the message made safe before it is placed in the line.
        record.message = one_line(record.getMessage(), MESSAGE_MAX)
        record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        tags = [
            f"{short}={one_line(value, VALUE_MAX)}"
            for short, name in (("rid", "request_id"), ("video", "video_id"), ("task", "task_id"))
            if (value := getattr(record, name, ""))
        ]
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            tags.extend(f"{one_line(key, 64)}={one_line(value, VALUE_MAX)}" for key, value in extra.items())
        if tags:
            text = f"{text} [{' '.join(tags)}]"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        below = [record.exc_text] if record.exc_text else []
        if record.stack_info:
            below.append(self.formatStack(record.stack_info))
        for block in below:
            lines = bounded(block, TRACEBACK_MAX).splitlines()
            text += "".join(f"\n    {one_line(line, TRACEBACK_LINE_MAX)}" for line in lines)
        return redact(text)


def make_handler(fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    return handler


def configure(settings: LogSettings, stream: TextIO | None = None) -> str | None:
    """Set up the root logger as `settings` say (config.LogSettings, from VIDEOGEN_LOG_FORMAT and
    VIDEOGEN_LOG_LEVEL). Returns the settings' problem, a bad value replaced by its default, for the caller
    to log now that logging works."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(settings.format, stream))
    root.setLevel(settings.level)
    # httpx logs every request URL at INFO; output URLs carry signed tokens, so keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return settings.problem
