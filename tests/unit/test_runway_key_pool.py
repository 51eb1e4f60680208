"""The Runway key pool (providers/runway/keys.py) and the provider's failover over it (issue 12): which key
takes a new task, when a key is out and for how long, and that a create is sent again on another key only
when Runway's answer proves that no task was made. Runway is an httpx MockTransport here; the acceptance
against the real simulator is tests/integration/test_runway_keys.py."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from videogen_server import errors
from videogen_server.domain.generation import GenerateSpec
from videogen_server.providers.runway import RetryPolicy, RunwayProvider
from videogen_server.providers.runway.credentials import RunwayCredential
from videogen_server.providers.runway.keys import KeyPool
from videogen_server.providers.runway.organization import ModelLimits, OrganizationFacts

BASE = "https://api.example.test"
SECRETS = {"a": "key_" + "aa" * 32, "b": "key_" + "bb" * 32, "c": "key_" + "cc" * 32}
NAME_OF = {f"Bearer {s}": n for n, s in SECRETS.items()}
TID = "0b6c9f6e-2b7d-4c1e-9d6e-3f1a2b3c4d5e"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.01)
CREDITS_400 = {"error": "You do not have enough credits to run this task."}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def creds(*names: str) -> list[RunwayCredential]:
    return [RunwayCredential(n, SECRETS[n]) for n in names]


def facts(credits: int = 100, **models: ModelLimits) -> OrganizationFacts:
    return OrganizationFacts(credits=credits, models=models)


# --- the pool on its own ------------------------------------------------------------------------------


def test_least_loaded_by_concurrency_ratio_then_count_then_daily_headroom():
    clock = Clock()
    pool = KeyPool(creds("a", "b", "c"), clock=clock)
    a, b, c = pool.keys
    a.facts = facts(**{"gen4.5": ModelLimits(max_concurrent=2, max_daily=100, daily_used=0)})
    b.facts = facts(**{"gen4.5": ModelLimits(max_concurrent=4, max_daily=100, daily_used=90)})
    c.facts = facts(**{"gen4.5": ModelLimits(max_concurrent=4, max_daily=100, daily_used=10)})
    # Nothing in flight: equal ratio (0) and count (0), so the daily headroom decides: a (100 left), then
    # c (90), then b (10).
    assert [k.name for k in pool.candidates("gen4.5")] == ["a", "c", "b"]
    pool.started("a", "gen4.5", "t1")  # a: 1/2 = 0.5
    pool.started("c", "gen4.5", "t2")  # c: 1/4 = 0.25
    assert [k.name for k in pool.candidates("gen4.5")] == ["b", "c", "a"]
    pool.ended("a", "t1")
    assert pool.candidates("gen4.5")[0].name in ("a", "b")
    # Load is per model: another model sees none of it.
    assert [k.name for k in pool.candidates("veo3.1")] == ["a", "b", "c"]


def test_facts_put_a_key_out_no_credits_for_every_model_a_used_cap_for_its_model():
    pool = KeyPool(creds("a", "b"), clock=Clock())
    a, b = pool.keys
    a.facts = facts(credits=0)
    b.facts = facts(**{"gen4.5": ModelLimits(max_daily=5, daily_used=5)})
    assert [k.name for k in pool.candidates("gen4.5")] == []
    assert [k.name for k in pool.candidates("veo3.1")] == ["b"]
    exhausted = pool.exhausted("gen4.5")
    assert exhausted.reason == "RUNWAY_KEYS_EXHAUSTED"
    assert [s for s, _ in exhausted.violations] == ["a", "b"]
    assert "no credits" in exhausted.violations[0][1] and "daily cap" in exhausted.violations[1][1]
    assert exhausted.retry_after is None  # not known when either returns


def test_our_creates_since_the_last_read_count_against_the_daily_cap():
    pool = KeyPool(creds("a", "b"), clock=Clock())
    a, _ = pool.keys
    a.facts = facts(**{"gen4.5": ModelLimits(max_daily=2, daily_used=1)})
    pool.started("a", "gen4.5", "t1")
    assert [k.name for k in pool.candidates("gen4.5")] == ["b"]


def test_a_mark_with_retry_after_lasts_that_long_and_without_it_follows_the_backoff():
    clock = Clock()
    pool = KeyPool(creds("a", "b"), clock=clock, backoff=(30.0, 60.0))
    assert pool.mark("a", "gen4.5", "daily cap", 12.0) == 12.0
    assert [k.name for k in pool.candidates("gen4.5")] == ["b"]
    assert [k.name for k in pool.candidates("veo3.1")] == ["a", "b"]  # only that model
    clock.now += 12.5
    assert [k.name for k in pool.candidates("gen4.5")] == ["a", "b"]
    # No Retry-After: 30 s, then 60 s for the next refusal in a row, then 60 s (the last step).
    assert pool.mark("b", None, "no credits", None) == 30.0
    assert pool.mark("b", None, "no credits", None) == 60.0
    assert pool.mark("b", None, "no credits", None) == 60.0
    assert [k.name for k in pool.candidates("veo3.1")] == ["a"]
    exhausted = KeyPool(creds("a"), clock=clock)
    exhausted.mark("a", "gen4.5", "daily cap", 40.0)
    assert exhausted.exhausted("gen4.5").retry_after == pytest.approx(40.0)


async def test_a_due_recheck_reads_the_organization_and_extends_the_mark_while_it_still_shows_out():
    clock = Clock()
    answers = {"a": facts(credits=0), "b": facts()}
    reads: list[str] = []

    async def fetch(cred: RunwayCredential) -> OrganizationFacts:
        reads.append(cred.name)
        return answers[cred.name]

    pool = KeyPool(creds("a", "b"), fetch=fetch, clock=clock, backoff=(30.0, 60.0, 120.0))
    pool.mark("a", None, "no credits", None)
    clock.now += 31
    await pool.refresh(["a"])
    assert reads == ["a"]
    assert [k.name for k in pool.candidates("gen4.5")] == ["b"]
    mark = pool.keys[0].marks["*"]
    assert mark.until == pytest.approx(clock.now + 60.0) and mark.strikes == 2
    answers["a"] = facts(credits=500)  # credits bought
    clock.now += 61
    await pool.refresh(["a"])
    assert pool.keys[0].marks == {}
    assert [k.name for k in pool.candidates("gen4.5")] == ["a", "b"]


async def test_a_failed_read_keeps_what_was_known():
    async def fetch(cred: RunwayCredential) -> OrganizationFacts:
        if cred.name == "a":
            raise errors.UpstreamUnavailable("down")
        return facts(credits=7)

    pool = KeyPool(creds("a", "b"), fetch=fetch, clock=Clock())
    pool.keys[0].facts = facts(credits=3)
    await pool.refresh()
    assert pool.keys[0].facts is not None and pool.keys[0].facts.credits == 3
    assert pool.keys[1].facts is not None and pool.keys[1].facts.credits == 7


def test_an_unknown_key_name_is_failed_precondition_naming_it_and_empty_is_default():
    pool = KeyPool([RunwayCredential("default", SECRETS["a"]), *creds("b")], clock=Clock())
    assert pool.get("").name == "default"
    with pytest.raises(errors.FailedPrecondition) as info:
        pool.get("gone")
    assert info.value.reason == "RUNWAY_KEY_NOT_CONFIGURED" and "'gone'" in info.value.message
    assert info.value.metadata == {"runway_key": "gone"}
    assert SECRETS["a"] not in repr(pool) + repr(pool.keys)


# --- the provider's failover ------------------------------------------------------------------------------


class Runway:
    """A MockTransport handler: per key name, the answers to creates (a status and a body, in turn; the
    last repeats); GET/DELETE answer the task; every request is recorded with its key's name."""

    def __init__(self, creates: dict[str, list[tuple[int, dict[str, Any]]]]) -> None:
        self.creates = creates
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        key = NAME_OF.get(request.headers.get("authorization", ""), "?")
        self.seen.append((key, request.method, request.url.path))
        if request.method == "POST":
            answers = self.creates.get(key, [(200, {"id": TID})])
            status, body = answers.pop(0) if len(answers) > 1 else answers[0]
            return httpx.Response(status, json=body)
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(
            200,
            json={"id": TID, "status": "SUCCEEDED", "createdAt": "2026-08-11T06:12:01.171Z", "output": []},
        )

    def posts(self) -> list[str]:
        return [k for k, m, _ in self.seen if m == "POST"]


def provider(runway: Runway, *names: str) -> RunwayProvider:
    http = httpx.AsyncClient(transport=httpx.MockTransport(runway))
    return RunwayProvider.connect(BASE, {n: SECRETS[n] for n in names}, http=http, retry=FAST)


def plan(p: RunwayProvider, model: str = "gen4.5") -> Any:
    return p.plan(
        GenerateSpec(model=model, prompt="a boat", seconds=8 if model == "veo3.1" else 5, size="1280x720")
    )


async def test_no_credits_on_the_first_key_creates_on_the_second_and_says_so():
    runway = Runway({"a": [(400, CREDITS_400)]})
    p = provider(runway, "a", "b")
    created = await p.create(plan(p))
    assert created.key == "b" and runway.posts() == ["a", "b"]
    # a stays out for every model: the next create goes straight to b.
    again = await p.create(plan(p, "veo3.1"))
    assert again.key == "b" and runway.posts() == ["a", "b", "b"]


async def test_a_429_puts_the_key_out_for_that_model_only_and_is_not_retried_on_it():
    runway = Runway({"a": [(429, {"error": "daily limit"}), (200, {"id": TID})]})
    p = provider(runway, "a", "b")
    assert (await p.create(plan(p, "gen4.5"))).key == "b"
    assert runway.posts() == ["a", "b"]
    assert (await p.create(plan(p, "veo3.1"))).key == "a"  # a still serves other models


async def test_a_named_key_refusing_is_not_retried_and_is_marked_out_for_the_pool():
    # A create held to key a (its uploads live there) is not sent on b, nor retried on a after a 429; the
    # pool learns a is at its cap for the model, so its own next choice for that model is b.
    runway = Runway({"a": [(429, {"error": "daily limit"})], "b": [(200, {"id": TID})]})
    p = provider(runway, "a", "b")
    with pytest.raises(errors.UpstreamUnavailable) as info:
        await p.create(plan(p, "gen4.5"), key="a")
    assert info.value.http_status == 429
    assert runway.posts() == ["a"]
    assert (await p.create(plan(p, "gen4.5"))).key == "b"
    assert runway.posts() == ["a", "b"]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_an_unknown_outcome_is_never_sent_again_on_another_key(status):
    runway = Runway({"a": [(status, {"error": "oops"})]})
    p = provider(runway, "a", "b")
    with pytest.raises(errors.UpstreamOutcomeUnknown):
        await p.create(plan(p))
    assert runway.posts() == ["a"]


async def test_every_key_out_is_resource_exhausted_with_a_violation_per_key_and_no_task():
    runway = Runway({"a": [(400, CREDITS_400)], "b": [(429, {"error": "daily"})]})
    p = provider(runway, "a", "b")
    with pytest.raises(errors.ResourceExhausted) as info:
        await p.create(plan(p))
    assert [s for s, _ in info.value.violations] == ["a", "b"]
    assert "credits" in info.value.violations[0][1] and "daily cap" in info.value.violations[1][1]
    assert runway.posts() == ["a", "b"]
    # Both known out now: the next create sends nothing at all.
    with pytest.raises(errors.ResourceExhausted):
        await p.create(plan(p))
    assert runway.posts() == ["a", "b"]


async def test_one_key_keeps_todays_errors_429_is_unavailable_after_retries_credits_is_credits():
    runway = Runway({"a": [(429, {"error": "daily"})]})
    p = provider(runway, "a")
    with pytest.raises(errors.UpstreamUnavailable) as info:
        await p.create(plan(p))
    assert not isinstance(info.value, errors.UpstreamOutcomeUnknown) and info.value.http_status == 429
    assert runway.posts() == ["a"] * FAST.max_attempts  # retried on the one key, as before
    runway = Runway({"a": [(400, CREDITS_400)]})
    p = provider(runway, "a")
    with pytest.raises(errors.UpstreamCredits):
        await p.create(plan(p))


async def test_reads_and_cancels_use_the_named_key_and_a_removed_key_is_failed_precondition():
    runway = Runway({})
    p = provider(runway, "a", "b")
    await p.get_task(TID, key="b")
    await p.cancel_task(TID, key="b")
    assert [k for k, _, _ in runway.seen] == ["b", "b"]
    for call in (p.get_task(TID, key="gone"), p.cancel_task(TID, key="gone")):
        with pytest.raises(errors.FailedPrecondition) as info:
            await call
        assert "'gone'" in info.value.message
    assert len(runway.seen) == 2  # nothing sent


async def test_a_named_create_uses_that_key_without_failover():
    runway = Runway({"b": [(400, CREDITS_400)]})
    p = provider(runway, "a", "b")
    with pytest.raises(errors.UpstreamCredits):
        await p.create(plan(p), key="b")
    assert runway.posts() == ["b"]


async def test_organization_is_read_with_each_key_and_parsed():
    body = {
        "creditBalance": 12,
        "tier": {
            "maxMonthlyCreditSpend": 100,
            "models": {"gen4.5": {"maxConcurrentGenerations": 2, "maxDailyGenerations": None}},
        },
        "usage": {"models": {"gen4.5": {"dailyGenerations": 3}}},
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(NAME_OF[request.headers["authorization"]])
        assert request.url.path == "/v1/organization"
        return httpx.Response(200, content=json.dumps(body))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    p = RunwayProvider.connect(BASE, {"a": SECRETS["a"], "b": SECRETS["b"]}, http=http, retry=FAST)
    await p.start()
    try:
        assert sorted(seen) == ["a", "b"]
        got = p.keys.keys[0].facts
        assert got is not None and got.credits == 12
        assert got.model("gen4.5") == ModelLimits(max_concurrent=2, max_daily=None, daily_used=3)
    finally:
        await p.aclose()


def test_an_upload_goes_to_the_key_with_the_fewest_tasks_in_flight_among_those_not_out():
    p = provider(Runway({}), "a", "b", "c")
    assert p.keys.for_upload().name == "a"  # all idle: configuration order
    p.keys.started("a", "gen4.5", "t1")
    p.keys.started("a", "veo3.1", "t2")
    p.keys.started("b", "gen4.5", "t3")
    assert p.keys.for_upload().name == "c"  # every model counts: an upload belongs to none
    p.keys.mark("c", None, "no credits left", None)
    assert p.keys.for_upload().name == "b"
