"""Runway's JSON <-> our domain types (runway-api.md §2-§4), and Runway's vocabulary: its task status words
and failure codes, translated here so that nothing past the provider needs to know them. No HTTP here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from videogen_server.domain.clock import parse_time
from videogen_server.domain.ids import is_canonical_uuid
from videogen_server.domain.task import UpstreamTask
from videogen_server.domain.video import DEFAULT_KEY_NAME, VideoStatus
from videogen_server.errors import UpstreamProtocolError

# Runway's task status words.
TASK_STATUS: dict[str, VideoStatus] = {
    "PENDING": VideoStatus.QUEUED,
    "THROTTLED": VideoStatus.QUEUED,
    "RUNNING": VideoStatus.IN_PROGRESS,
    "SUCCEEDED": VideoStatus.COMPLETED,
    "FAILED": VideoStatus.FAILED,
    "CANCELLED": VideoStatus.CANCELLED,
}
# What a task is before Runway first reports on it: a create answers with an id only (runway-api.md §2).
NEW_TASK_STATUS = "PENDING"
# failureCode families that blame the request itself (its content or its inputs): sending it again as it
# is would fail the same way (runway-api.md §3, failureCode families).
_REQUEST_FAILURES = ("SAFETY.", "INPUT_PREPROCESSING.SAFETY", "ASSET.", "THIRD_PARTY.INPUT_VALIDATION")


def task_status(word: str) -> VideoStatus:
    """A Runway status word as our VideoStatus. An unknown word from a newer API version is treated as
    still running, not as a failure."""
    return TASK_STATUS.get(word, VideoStatus.IN_PROGRESS)


def is_retryable_failure(code: str) -> bool:
    """Whether a Runway failureCode suggests the same request might succeed when submitted again."""
    return not code.startswith(_REQUEST_FAILURES)


@dataclass(frozen=True)
class CreatedTask:
    id: str
    estimated_credits: float | None = None
    status: str = NEW_TASK_STATUS  # Runway's word for the new task (the create response carries none)
    key: str = DEFAULT_KEY_NAME  # the name of the key it was created with


@dataclass(frozen=True)
class Issue:
    path: tuple[str | int, ...]
    message: str


def _number(obj: dict[str, Any], key: str, what: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UpstreamProtocolError(f"Runway {what}: {key!r} is not a number")
    return float(value)


def _credits(obj: dict[str, Any], key: str, what: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UpstreamProtocolError(f"Runway {what}: {key!r} is not an object")
    return _number(value, "credits", what)


def _string(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UpstreamProtocolError(f"Runway {what}: {key!r} is not a string")
    return value


def _created_at(value: str) -> datetime | None:
    """ISO-8601 as Runway writes it (2026-08-11T06:12:01.171Z). Unparseable: None (tolerated)."""
    try:
        return parse_time(value)
    except ValueError:
        return None


def parse_created(data: Any) -> CreatedTask:
    """The body of a 200 create response. Raises UpstreamProtocolError on a wrong shape."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise UpstreamProtocolError("Runway create response has no task id")
    if not is_canonical_uuid(data["id"]):
        raise UpstreamProtocolError("Runway returned a task id that is not a UUID")
    return CreatedTask(id=data["id"], estimated_credits=_credits(data, "estimatedCost", "create response"))


def parse_task(data: Any) -> UpstreamTask:
    """GET /v1/tasks/{id} -> UpstreamTask. Missing optional fields are fine; a wrong shape is not."""
    what = "task"
    if not isinstance(data, dict):
        raise UpstreamProtocolError("Runway task is not a JSON object")
    task_id = data.get("id")
    if not is_canonical_uuid(task_id):
        raise UpstreamProtocolError("Runway task has no UUID id")
    status = data.get("status")
    if not isinstance(status, str) or not status:
        raise UpstreamProtocolError("Runway task has no status")
    output = data.get("output")
    if output is None:
        outputs: tuple[str, ...] = ()
    elif isinstance(output, list) and all(isinstance(u, str) for u in output):
        outputs = tuple(output)
    else:
        raise UpstreamProtocolError("Runway task output is not a list of URLs")
    created = data.get("createdAt")
    if created is not None and not isinstance(created, str):
        raise UpstreamProtocolError("Runway task createdAt is not a string")
    assert isinstance(task_id, str)
    failure_code = _string(data, "failureCode", what)
    return UpstreamTask(
        id=task_id,
        status=status,
        video_status=task_status(status),
        progress=_number(data, "progress", what),
        outputs=outputs,
        failure=_string(data, "failure", what),
        failure_code=failure_code,
        failure_retryable=is_retryable_failure(failure_code),
        cost_credits=_credits(data, "cost", what),
        estimated_credits=_credits(data, "estimatedCost", what),
        created_at=_created_at(created) if created else None,
    )


def render_path(path: Sequence[str | int]) -> str:
    """An issue path as Runway wrote it: ["keyframes", 0, "uri"] -> "keyframes[0].uri"."""
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else p
    return out


def parse_error(data: Any) -> tuple[str, list[Issue]]:
    """A 4xx body {error, issues?[{path, message}]}. Tolerant: anything odd yields ("", [])."""
    if not isinstance(data, dict):
        return "", []
    error = data.get("error")
    message = error if isinstance(error, str) else ""
    issues: list[Issue] = []
    raw = data.get("issues")
    if isinstance(raw, list):
        for item in raw:
            if not isinstance(item, dict):
                continue
            path = item.get("path")
            parts: Sequence[Any] = path if isinstance(path, list) else []
            clean = tuple(p for p in parts if isinstance(p, str | int) and not isinstance(p, bool))
            msg = item.get("message")
            issues.append(Issue(path=clean, message=msg if isinstance(msg, str) else "invalid value"))
    return message, issues


@dataclass(frozen=True)
class UploadTicket:
    """POST /v1/uploads's answer (runway-api.md §2.2): where to POST the file (a presigned storage form),
    the form fields to send before it, and the runway:// URI it will be known by. Its repr leaves out the
    fields: they are a signed policy, good for one upload."""

    upload_url: str
    fields: dict[str, str]
    runway_uri: str

    def __repr__(self) -> str:
        return f"UploadTicket(runway_uri={self.runway_uri!r}, fields=<{len(self.fields)} signed fields>)"


def parse_upload_ticket(data: Any) -> UploadTicket:
    """The /v1/uploads answer; UpstreamProtocolError when it is not `{uploadUrl, fields, runwayUri}` with an
    http(s) upload URL, string fields and a runway:// URI."""
    if not isinstance(data, dict):
        raise UpstreamProtocolError("upload answer is not a JSON object")
    url, fields, uri = data.get("uploadUrl"), data.get("fields"), data.get("runwayUri")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise UpstreamProtocolError("upload answer has no http(s) uploadUrl")
    if not isinstance(fields, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in fields.items()
    ):
        raise UpstreamProtocolError("upload answer's fields are not a string map")
    if not isinstance(uri, str) or not uri.startswith("runway://"):
        raise UpstreamProtocolError("upload answer has no runway:// URI")
    return UploadTicket(upload_url=url, fields=dict(fields), runway_uri=uri)
