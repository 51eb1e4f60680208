"""Structured logs: one JSON object per line (`VIDEOGEN_LOG_FORMAT=json`) or plain text (the default).

Every record logged while an RPC runs carries that RPC's request id and method, and the video id and
upstream (Runway) task id once they are known. They live in context variables: the RPC's task sets them
(api/telemetry_interceptor.py, runway/client.py) and `ContextFilter` copies them onto each record, so
nothing has to pass them around. A shared poller gets a context of its own (its video and task).

Secrets never reach a log line: the code never logs them, and as a second line of defence every
registered secret (the Runway key, callers' keys: `register_secret`) is replaced in the formatted text.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")

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


def new_request_id() -> str:
    return secrets.token_hex(8)


def bind_video(value: str) -> None:
    """The video this RPC (or task) is about, from now on in this context."""
    if value and video_id.get() != value:
        video_id.set(value)


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
            "message": record.getMessage(),
        }
        for name in _CONTEXT:
            value = getattr(record, name, "")
            if value:
                entry[name] = value
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            for key, value in extra.items():
                entry.setdefault(str(key), value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    """The classic one-line format, with `[rid=… video=… task=…]` appended when an RPC context is set."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        tags = [
            f"{short}={value}"
            for short, name in (("rid", "request_id"), ("video", "video_id"), ("task", "task_id"))
            if (value := getattr(record, name, ""))
        ]
        extra = getattr(record, "fields", None)
        if isinstance(extra, Mapping):
            tags.extend(f"{key}={value}" for key, value in extra.items())
        if tags:
            first, sep, rest = text.partition("\n")
            text = f"{first} [{' '.join(tags)}]{sep}{rest}"
        return redact(text)


def make_handler(fmt: str = "text", stream: TextIO | None = None) -> logging.Handler:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    return handler


def configure(env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> str | None:
    """Set up the root logger from VIDEOGEN_LOG_LEVEL and VIDEOGEN_LOG_FORMAT. Returns an error message
    for a bad value (logging is then set up with the defaults, so the message can be logged)."""
    env = os.environ if env is None else env
    problem = None
    fmt = (env.get("VIDEOGEN_LOG_FORMAT") or "text").strip().lower()
    if fmt not in FORMATS:
        problem = f"VIDEOGEN_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {fmt!r}"
        fmt = "text"
    level_name = (env.get("VIDEOGEN_LOG_LEVEL") or "INFO").strip().upper()
    level = logging.getLevelNamesMapping().get(level_name)
    if level is None:
        problem = problem or f"VIDEOGEN_LOG_LEVEL must be a level name like INFO or DEBUG, got {level_name!r}"
        level = logging.INFO
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(fmt, stream))
    root.setLevel(level)
    # httpx logs every request URL at INFO; output URLs carry signed tokens, so keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return problem
