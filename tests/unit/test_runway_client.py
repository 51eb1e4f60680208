from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from videogen_server import errors
from videogen_server.providers.runway import CreatedTask, OutputDownloads, RetryPolicy, RunwayClient
from videogen_server.providers.runway.mapping import wire_path_to_field

KEY = "key_" + "ab12" * 32
BASE = "https://api.example.test"
TID = "0b6c9f6e-2b7d-4c1e-9d6e-3f1a2b3c4d5e"
OUT = "https://cdn.other.test/out.mp4?_jwt=signed"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    def __init__(self, *responses: httpx.Response | Exception | Handler) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        if isinstance(item, Exception):
            raise item
        if callable(item) and not isinstance(item, httpx.Response):
            return item(request)
        return item


def make(rec: Recorder, retry: RetryPolicy = FAST, timeout: float = 30.0) -> RunwayClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(rec))
    return RunwayClient(BASE, KEY, retry=retry, http=http, timeout=timeout, issue_field=wire_path_to_field)


def downloads(rec: Recorder, retry: RetryPolicy = FAST) -> OutputDownloads:
    """Output downloads are a class of their own (downloads.py), on a pool of their own."""
    return OutputDownloads(retry=retry, http=httpx.AsyncClient(transport=httpx.MockTransport(rec)))


def task(status: str = "RUNNING", **extra: Any) -> dict[str, Any]:
    return {"id": TID, "status": status, "createdAt": "2026-08-11T06:12:01.171Z", **extra}


def assert_no_key(exc: BaseException) -> None:
    assert KEY not in str(exc) and KEY not in repr(exc)


# --- headers ------------------------------------------------------------------------------------


async def test_api_headers_and_create() -> None:
    rec = Recorder(httpx.Response(200, json={"id": TID, "estimatedCost": {"credits": 25}}))
    client = make(rec)
    created = await client.create("/v1/text_to_video", {"model": "gen4.5", "promptText": "p"})
    assert created == CreatedTask(id=TID, estimated_credits=25.0)
    req = rec.requests[0]
    assert str(req.url) == BASE + "/v1/text_to_video"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.headers["x-runway-version"] == "2024-11-06"
    assert req.headers["accept"] == "application/json"
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.content) == {"model": "gen4.5", "promptText": "p"}
    assert KEY not in repr(client)


async def test_get_task_parses_and_sends_headers() -> None:
    rec = Recorder(httpx.Response(200, json=task("RUNNING", progress=0.45, estimatedCost={"credits": 10})))
    t = await make(rec).get_task(TID)
    assert (t.id, t.status, t.progress, t.estimated_credits) == (TID, "RUNNING", 0.45, 10.0)
    assert t.created_at is not None and t.created_at.year == 2026
    assert rec.requests[0].headers["x-runway-version"] == "2024-11-06"
    assert rec.requests[0].url.path == f"/v1/tasks/{TID}"


async def test_get_task_succeeded_and_failed_shapes() -> None:
    rec = Recorder(httpx.Response(200, json=task("SUCCEEDED", output=[OUT], cost={"credits": 20})))
    t = await make(rec).get_task(TID)
    assert t.outputs == (OUT,) and t.cost_credits == 20.0
    rec = Recorder(httpx.Response(200, json=task("FAILED", failure="nope", failureCode="SAFETY.INPUT.TEXT")))
    t = await make(rec).get_task(TID)
    assert (t.failure, t.failure_code) == ("nope", "SAFETY.INPUT.TEXT")


async def test_output_gets_no_credentials() -> None:
    rec = Recorder(httpx.Response(200, content=b"x" * 10, headers={"content-type": "video/mp4"}))
    async with downloads(rec).open_output(OUT) as out:
        data = b"".join([c async for c in out.iter_chunks(4)])
    assert data == b"x" * 10 and out.total_size == 10 and out.content_type == "video/mp4"
    h = rec.requests[0].headers
    assert "authorization" not in h and "x-runway-version" not in h and "range" not in h


async def test_output_no_credentials_even_from_client_defaults() -> None:
    rec = Recorder(httpx.Response(200, content=b"abc"))
    http = httpx.AsyncClient(transport=httpx.MockTransport(rec), headers={"Authorization": f"Bearer {KEY}"})
    client = OutputDownloads(retry=FAST, http=http)
    async with client.open_output(BASE + "/same-host.mp4") as out:
        assert b"".join([c async for c in out.iter_chunks(2)]) == b"abc"
    assert "authorization" not in rec.requests[0].headers


# --- task ids -------------------------------------------------------------------------------------


async def test_non_uuid_ids_refused() -> None:
    rec = Recorder(httpx.Response(200, json=task()))
    client = make(rec)
    for bad in ("../organization", "abc", TID + "/x", "{" + TID + "}", ""):
        with pytest.raises(ValueError):
            await client.get_task(bad)
        with pytest.raises(ValueError):
            await client.delete_task(bad)
    assert rec.requests == []
    rec = Recorder(httpx.Response(200, json={"id": "not-a-uuid"}))
    with pytest.raises(errors.UpstreamProtocolError):
        await make(rec).create("/v1/text_to_video", {})


# --- error mapping ------------------------------------------------------------------------------


async def test_400_credits() -> None:
    body = {"error": "You do not have enough credits to run this task."}
    with pytest.raises(errors.UpstreamCredits) as info:
        await make(Recorder(httpx.Response(400, json=body))).create("/v1/text_to_video", {})
    assert "credits" in str(info.value)


async def test_400_validation_issues() -> None:
    body = {
        "error": "Validation of body failed",
        "issues": [
            {
                "code": "too_big",
                "maximum": 30,
                "message": "Asset duration must be at most 30 seconds",
                "path": ["videoUri"],
            },
            {"code": "invalid_value", "message": "Invalid option", "path": ["ratio"]},
            {"code": "x", "message": "bad", "path": ["keyframes", 0, "uri"]},
        ],
    }
    with pytest.raises(errors.UpstreamRejected) as info:
        await make(Recorder(httpx.Response(400, json=body))).create("/v1/video_to_video", {})
    v = info.value.violations
    assert [x.field for x in v] == ["video_uri", "size", "provider_options.keyframes[0].uri"]
    assert v[0].description == "Asset duration must be at most 30 seconds"
    assert isinstance(info.value, errors.InvalidArgument)


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_logged_without_key(status: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for call in ("create", "get"):
        rec = Recorder(httpx.Response(status, json={"error": f"bad key {KEY}"}))
        client = make(rec)
        with pytest.raises(errors.UpstreamAuth) as info:
            if call == "create":
                await client.create("/v1/text_to_video", {})
            else:
                await client.get_task(TID)
        assert_no_key(info.value)
        assert len(rec.requests) == 1
    assert any(r.levelno >= logging.ERROR for r in caplog.records)
    assert KEY not in caplog.text


async def test_404_task_and_delete() -> None:
    with pytest.raises(errors.UpstreamNotFound):
        await make(Recorder(httpx.Response(404, json={"error": "Could not find Task"}))).get_task(TID)
    rec = Recorder(httpx.Response(204))
    assert await make(rec).delete_task(TID) is True
    assert rec.requests[0].method == "DELETE" and rec.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert await make(Recorder(httpx.Response(404, json={"error": "x"}))).delete_task(TID) is False


async def test_error_message_scrubs_key() -> None:
    rec = Recorder(httpx.Response(400, json={"error": f"weird {KEY}"}))
    with pytest.raises(errors.UpstreamRejected) as info:
        await make(rec).create("/v1/text_to_video", {})
    assert_no_key(info.value)


# --- read retries --------------------------------------------------------------------------------


async def test_read_retries_5xx_then_succeeds() -> None:
    rec = Recorder(httpx.Response(503), httpx.Response(502), httpx.Response(200, json=task()))
    assert (await make(rec).get_task(TID)).status == "RUNNING"
    assert len(rec.requests) == 3


async def test_read_retries_network_and_malformed() -> None:
    rec = Recorder(
        httpx.ConnectError("boom"),
        httpx.Response(200, content=b"{not json"),
        httpx.Response(200, json=task()),
    )
    assert (await make(rec).get_task(TID)).status == "RUNNING"
    assert len(rec.requests) == 3


async def test_read_gives_up_after_max_attempts() -> None:
    rec = Recorder(httpx.Response(500))
    with pytest.raises(errors.UpstreamUnavailable) as info:
        await make(rec, RetryPolicy(max_attempts=3, base_delay=0.001)).get_task(TID)
    assert len(rec.requests) == 3 and info.value.http_status == 500
    rec = Recorder(httpx.Response(200, json={"id": TID}))  # wrong shape: no status
    with pytest.raises(errors.UpstreamUnavailable):
        await make(rec).get_task(TID)
    assert len(rec.requests) == 4


async def test_read_honours_retry_after() -> None:
    slept: list[float] = []

    async def fake_sleep(d: float) -> None:
        slept.append(d)

    rec = Recorder(
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(503, headers={"Retry-After": "1.5"}),
        httpx.Response(200, json=task()),
    )
    await make(rec, RetryPolicy(sleep=fake_sleep)).get_task(TID)
    assert slept == [2.0, 1.5]


async def test_long_retry_after_is_not_waited_for() -> None:
    slept: list[float] = []

    async def fake_sleep(d: float) -> None:
        slept.append(d)

    rec = Recorder(httpx.Response(429, headers={"Retry-After": "3600"}))
    with pytest.raises(errors.UpstreamUnavailable) as info:
        await make(rec, RetryPolicy(sleep=fake_sleep)).get_task(TID)
    assert info.value.reason == "UPSTREAM_RATE_LIMITED" and info.value.retry_after == 3600.0
    assert info.value.http_status == 429 and slept == [] and len(rec.requests) == 1


def test_backoff_shape() -> None:
    p = RetryPolicy(random=lambda: 1.0)
    assert [p.delay(i) for i in range(6)] == [0.375, 0.75, 1.5, 3.0, 6.0, 6.0]
    p = RetryPolicy(random=lambda: 0.0)
    assert [p.delay(i) for i in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert p.delay(0, retry_after=1.0) == 1.0 and p.delay(0, retry_after=10.0) is None


async def test_retry_after_http_date() -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from videogen_server.providers.runway.transport import parse_retry_after

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    got = parse_retry_after(httpx.Headers({"Retry-After": when}))
    assert got is not None and 25 <= got <= 31
    assert parse_retry_after(httpx.Headers({"Retry-After": "garbage"})) is None


# --- create retries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500),
        httpx.Response(502),
        httpx.ReadTimeout("slow"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("stale keep-alive"),
        httpx.WriteError("broken pipe"),
        httpx.Response(200, content=b"<html>"),
        httpx.Response(200, json={"nope": 1}),
    ],
)
async def test_create_not_retried_when_outcome_unknown(failure: httpx.Response | Exception) -> None:
    rec = Recorder(failure, httpx.Response(200, json={"id": TID}))
    with pytest.raises(errors.UpstreamOutcomeUnknown) as info:
        await make(rec).create("/v1/text_to_video", {"model": "gen4.5"})
    assert len(rec.requests) == 1
    assert info.value.reason == "UPSTREAM_OUTCOME_UNKNOWN"
    assert_no_key(info.value)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(429),
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("syn"),
        httpx.PoolTimeout("pool"),
    ],
)
async def test_create_retried_when_not_started(failure: httpx.Response | Exception) -> None:
    rec = Recorder(failure, httpx.Response(200, json={"id": TID}))
    assert (await make(rec).create("/v1/text_to_video", {})).id == TID
    assert len(rec.requests) == 2


async def test_create_429_exhausted() -> None:
    rec = Recorder(httpx.Response(429, json={"error": "daily cap"}))
    with pytest.raises(errors.UpstreamUnavailable) as info:
        await make(rec).create("/v1/text_to_video", {})
    assert info.value.reason == "UPSTREAM_RATE_LIMITED" and len(rec.requests) == 4
    assert not isinstance(info.value, errors.UpstreamOutcomeUnknown)


# --- deadlines -----------------------------------------------------------------------------------


async def test_deadline_already_passed() -> None:
    rec = Recorder(httpx.Response(200, json=task()))
    with pytest.raises(errors.DeadlineExceeded):
        await make(rec).get_task(TID, deadline=time.monotonic() - 1)
    assert rec.requests == []


async def test_no_sleep_past_deadline() -> None:
    slept: list[float] = []

    async def fake_sleep(d: float) -> None:
        slept.append(d)

    rec = Recorder(httpx.Response(503, headers={"Retry-After": "3"}))
    start = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded):
        await make(rec, RetryPolicy(sleep=fake_sleep)).get_task(TID, deadline=start + 1.0)
    assert slept == [] and len(rec.requests) == 1


async def test_attempt_timeout_capped_by_deadline() -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json=task())

    await make(Recorder(handler), timeout=30.0).get_task(TID, deadline=time.monotonic() + 2.0)
    assert seen[0]["read"] <= 2.0 and seen[0]["connect"] <= 2.0
    await make(Recorder(handler), timeout=30.0).get_task(TID)
    assert seen[1]["read"] == 30.0 and seen[1]["connect"] == 5.0


async def test_real_sleep_stops_at_deadline() -> None:
    rec = Recorder(httpx.Response(503))
    policy = RetryPolicy(max_attempts=100, base_delay=0.05, max_delay=0.05)
    start = time.monotonic()
    with pytest.raises(errors.DeadlineExceeded):
        await make(rec, policy).get_task(TID, deadline=start + 0.3)
    assert time.monotonic() - start < 0.5


# --- output downloads ----------------------------------------------------------------------------


async def test_output_range_206() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["range"] == "bytes=4-"
        return httpx.Response(206, content=b"456789", headers={"content-range": "bytes 4-9/10"})

    rec = Recorder(handler)
    async with downloads(rec).open_output(OUT, start=4) as out:
        assert (out.start, out.total_size) == (4, 10)
        assert b"".join([c async for c in out.iter_chunks(4)]) == b"456789"


async def test_output_range_with_end() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["range"] == "bytes=2-4"
        return httpx.Response(206, content=b"234", headers={"content-range": "bytes 2-4/10"})

    async with downloads(Recorder(handler)).open_output(OUT, start=2, end=5) as out:
        assert b"".join([c async for c in out.iter_chunks(64)]) == b"234"


async def test_output_server_ignores_range() -> None:
    rec = Recorder(httpx.Response(200, content=b"0123456789"))
    async with downloads(rec).open_output(OUT, start=3, end=7) as out:
        assert out.start == 3 and out.total_size == 10
        assert b"".join([c async for c in out.iter_chunks(2)]) == b"3456"


async def test_output_416_is_out_of_range() -> None:
    with pytest.raises(errors.OutOfRange):
        async with downloads(Recorder(httpx.Response(416))).open_output(OUT, start=100):
            pass
    with pytest.raises(errors.OutOfRange):
        async with downloads(Recorder(httpx.Response(200, content=b"abc"))).open_output(OUT, start=3):
            pass


@pytest.mark.parametrize("status", [403, 404, 410])
async def test_output_expired(status: int) -> None:
    rec = Recorder(httpx.Response(status))
    with pytest.raises(errors.OutputExpired):
        async with downloads(rec).open_output(OUT):
            pass
    assert len(rec.requests) == 1


async def test_output_open_retries_5xx() -> None:
    rec = Recorder(httpx.Response(503), httpx.ReadError("x"), httpx.Response(200, content=b"ok"))
    async with downloads(rec).open_output(OUT) as out:
        assert b"".join([c async for c in out.iter_chunks(8)]) == b"ok"
    assert len(rec.requests) == 3
    rec = Recorder(httpx.Response(500))
    with pytest.raises(errors.UpstreamUnavailable):
        async with downloads(rec).open_output(OUT):
            pass


class _CutStream(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes], error: Exception | None) -> None:
        self.parts, self.error = parts, error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for p in self.parts:
            yield p
            await asyncio.sleep(0)
        if self.error is not None:
            raise self.error


async def test_output_short_body_is_unavailable() -> None:
    resp = httpx.Response(200, headers={"content-length": "100"}, stream=_CutStream([b"a" * 40], None))
    got = b""
    with pytest.raises(errors.UpstreamUnavailable) as info:
        async with downloads(Recorder(resp)).open_output(OUT) as out:
            async for chunk in out.iter_chunks(16):
                got += chunk
    assert "cut short" in str(info.value) and got == b"a" * 40


async def test_output_connection_cut_is_unavailable() -> None:
    resp = httpx.Response(
        200,
        headers={"content-length": "100"},
        stream=_CutStream([b"a" * 40], httpx.RemoteProtocolError("peer closed connection")),
    )
    with pytest.raises(errors.UpstreamUnavailable):
        async with downloads(Recorder(resp)).open_output(OUT) as out:
            async for _ in out.iter_chunks(16):
                pass


async def test_output_chunk_sizes() -> None:
    rec = Recorder(httpx.Response(200, content=b"z" * 1000))
    async with downloads(rec).open_output(OUT) as out:
        sizes = [len(c) async for c in out.iter_chunks(256)]
    assert sizes == [256, 256, 256, 232]


async def test_owned_client_closes() -> None:
    client = RunwayClient(BASE, KEY)
    assert KEY not in repr(client) and KEY not in str(client)
    await client.aclose()
