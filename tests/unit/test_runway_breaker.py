"""The Runway API circuit breaker (runway/breaker.py) on its own and wired into RunwayClient."""

from __future__ import annotations

import logging

import httpx
import pytest
from videogen_server import errors
from videogen_server.observability.metrics import Metrics
from videogen_server.observability.telemetry import Telemetry
from videogen_server.providers.runway import OutputDownloads, RetryPolicy, RunwayClient
from videogen_server.providers.runway.breaker import CircuitBreaker

KEY = "key_" + "cd34" * 32
BASE = "https://api.example.test"
TID = "0b6c9f6e-2b7d-4c1e-9d6e-3f1a2b3c4d5e"
OUT = "https://cdn.other.test/out.mp4?_jwt=signed-token"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def no_sleep(_: float) -> None:
    return None


def refused(breaker: CircuitBreaker) -> errors.UpstreamUnavailable:
    with pytest.raises(errors.UpstreamUnavailable) as info:
        breaker.admit()
    return info.value


def trip(breaker: CircuitBreaker, times: int = 3) -> None:
    for _ in range(times):
        breaker.connect_failed(breaker.admit())


# --- the breaker alone -----------------------------------------------------------------------------


def test_opens_after_threshold_consecutive_connect_failures() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=3, cooldown=2.0, clock=clock)
    assert [b.connect_failed(b.admit()) for _ in range(2)] == [False, False]
    assert not b.is_open
    assert b.connect_failed(b.admit()) is True
    assert b.is_open
    clock.now += 0.5
    err = refused(b)
    assert err.reason == "UPSTREAM_UNAVAILABLE" and err.metadata["circuit"] == "open"
    assert err.retry_after == pytest.approx(1.5)


def test_a_response_resets_the_count_and_other_outcomes_do_not_count() -> None:
    b = CircuitBreaker(threshold=3, clock=Clock())
    trip(b, 2)
    assert b.connected(b.admit()) is False  # closed already: nothing to report
    trip(b, 2)
    for _ in range(5):  # read timeouts, resets after sending, cancellations: no verdict
        b.released(b.admit())
    assert not b.is_open
    trip(b, 1)
    assert b.is_open


def test_half_open_lets_one_probe_through_and_doubles_the_cooldown_up_to_the_cap() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown=2.0, max_cooldown=5.0, probe_wait=0.7, clock=clock)
    trip(b, 1)
    cooldowns = []
    for _ in range(3):
        left = refused(b).retry_after
        assert left is not None
        cooldowns.append(left)
        clock.now += left
        probe = b.admit()
        assert probe is True
        assert refused(b).retry_after == pytest.approx(0.7)  # while the probe is in flight
        assert b.connect_failed(probe) is False  # still open: not a new opening
    assert cooldowns == pytest.approx([2.0, 4.0, 5.0])
    assert refused(b).retry_after == pytest.approx(5.0)


def test_a_probe_with_no_verdict_frees_the_slot_and_a_response_closes() -> None:
    clock = Clock()
    b = CircuitBreaker(threshold=1, cooldown=2.0, clock=clock)
    trip(b, 1)
    clock.now += 2.0
    b.released(b.admit())  # e.g. the probe's caller was cancelled
    assert b.is_open
    probe = b.admit()
    assert probe is True
    assert b.connected(probe) is True
    assert not b.is_open
    assert b.admit() is False
    # Closed again, the cooldown starts over at its base.
    trip(b, 1)
    assert refused(b).retry_after == pytest.approx(2.0)


# --- wired into RunwayClient ------------------------------------------------------------------------


class Upstream:
    """A MockTransport handler: connection refused until `up`, then `answer` (and 200 for outputs)."""

    def __init__(self) -> None:
        self.up = False
        self.answer = httpx.Response(503)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "cdn.other.test":
            return httpx.Response(200, content=b"video")
        if not self.up:
            raise httpx.ConnectError("connection refused")
        return self.answer

    def api_requests(self) -> int:
        return sum(1 for r in self.requests if r.url.host == "api.example.test")


def client(upstream: Upstream, clock: Clock, metrics: Metrics) -> RunwayClient:
    return RunwayClient(
        BASE,
        KEY,
        retry=RetryPolicy(sleep=no_sleep),
        http=httpx.AsyncClient(transport=httpx.MockTransport(upstream)),
        observer=Telemetry(metrics),
        breaker=CircuitBreaker(threshold=3, cooldown=2.0, clock=clock),
    )


def gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("videogen_upstream_circuit_open")


async def test_client_fails_fast_while_open_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="videogen_server.providers.runway")
    clock, upstream, metrics = Clock(), Upstream(), Metrics()
    runway = client(upstream, clock, metrics)
    assert gauge(metrics) == 0

    # Three refused connections open the circuit; the fourth attempt of the same call is refused unsent.
    with pytest.raises(errors.UpstreamUnavailable) as info:
        await runway.create("/v1/text_to_video", {"promptText": "p"})
    assert not isinstance(info.value, errors.UpstreamOutcomeUnknown)
    assert info.value.metadata["circuit"] == "open"
    assert upstream.api_requests() == 3
    assert gauge(metrics) == 1

    # While open: every /v1 call fails at once without a request.
    for call in (runway.get_task(TID), runway.delete_task(TID), runway.create("/v1/image_to_video", {})):
        with pytest.raises(errors.UpstreamUnavailable) as info:
            await call
        assert info.value.metadata["circuit"] == "open" and info.value.retry_after == pytest.approx(2.0)
    assert upstream.api_requests() == 3

    # Output downloads (another host, another class) do not share the API's breaker.
    downloads = OutputDownloads(http=httpx.AsyncClient(transport=httpx.MockTransport(upstream)))
    async with downloads.open_output(OUT) as out:
        assert b"".join([c async for c in out.iter_chunks(1024)]) == b"video"

    # Back up, cooldown over: the probe's 503 is a response, so the circuit closes (then the read retries).
    upstream.up = True
    clock.now += 2.0
    with pytest.raises(errors.UpstreamUnavailable) as info:
        await runway.get_task(TID)
    assert info.value.http_status == 503 and "circuit" not in info.value.metadata
    assert upstream.api_requests() == 3 + 4
    assert gauge(metrics) == 0

    opened = [r for r in caplog.records if "circuit open" in r.getMessage()]
    closed = [r for r in caplog.records if "circuit closed" in r.getMessage()]
    assert len(opened) == 1 and len(closed) == 1
    text = caplog.text
    assert KEY not in text and "signed-token" not in text and "api.example.test" not in text
    await runway.aclose()


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(503), httpx.ReadTimeout("slow"), httpx.ReadError("reset"), httpx.PoolTimeout("pool")],
)
async def test_only_connections_that_never_opened_count(failure: httpx.Response | Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(failure, Exception):
            raise failure
        return failure

    breaker = CircuitBreaker(threshold=3, clock=Clock())
    runway = RunwayClient(
        BASE,
        KEY,
        retry=RetryPolicy(sleep=no_sleep),
        http=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        breaker=breaker,
    )
    for _ in range(3):  # 12 failed GET attempts
        with pytest.raises(errors.UpstreamError):
            await runway.get_task(TID)
    assert not breaker.is_open
    await runway.aclose()
