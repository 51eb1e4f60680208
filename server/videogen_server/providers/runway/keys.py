"""The key pool (design §5; issue 12, "Several Runway keys"): every configured Runway key, what is known of
its organization (GET /v1/organization: credits, and per model the concurrency limit, the rolling 24 h cap
and its use), and whether it can take a new task for a model now.

Choosing a key for a new task (`candidates`): among the keys that are not out for the model, the least
loaded first. A key's load for a model is, in this order:
1. our tasks in flight on that key for that model divided by the key's maxConcurrentGenerations for it (a
   key under its limit starts at once; one over it makes Runway THROTTLE the task); with no known limit
   (not fetched yet, or Runway's null) the ratio is 0 and
2. the count itself breaks the tie (spreads tasks over keys without limits);
3. then the larger daily headroom (maxDailyGenerations minus the 24 h use, less our creates since);
4. then configuration order.
"In flight" counts the tasks this process created with the key and has not yet seen end (by a poll, a
cancel or a 404); an entry older than ACTIVE_HORIZON is dropped (another replica may have polled it to its
end), so a restart or a take-over makes a key look less loaded than it is, never unavailable: Runway only
THROTTLEs, it does not refuse, a task over the concurrency limit.

A key is out for a model when:
- it was refused for that model with a 429 (the per-model daily cap) or for every model with the no-credits
  400 (`mark`): for Retry-After seconds when Runway says so, else for a backoff (30 s, 1 min, 2 min, 5 min,
  15 min, by the number of refusals in a row) after which its organization is read again; a key the
  organization still shows out stays out for the next step of the backoff;
- or its organization says so: creditBalance 0 (every model), or the model's daily use at its cap.

With one key only, nothing of this is used: the provider sends every call with it as before (a 429 retried
on it, the no-credits 400 reported), and no /v1/organization request is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from videogen_server import errors
from videogen_server.domain.video import DEFAULT_KEY_NAME
from videogen_server.providers.runway.credentials import RunwayCredential
from videogen_server.providers.runway.organization import ModelLimits, OrganizationFacts

log = logging.getLogger(__name__)

# A mark's scope when the key is out for every model (the no-credits 400).
ALL_MODELS = "*"
# Seconds a refused key stays out when Runway gave no Retry-After, by refusals in a row.
RECHECK_BACKOFF = (30.0, 60.0, 120.0, 300.0, 900.0)
# How often every key's organization is read again (credits bought, caps raised, the 24 h window moving).
REFRESH_INTERVAL = 60.0
# A task we created and never saw end stops counting as load after this long (see the module docstring).
ACTIVE_HORIZON = 3600.0
# How long start-up waits for the first read of every key's organization.
START_TIMEOUT = 10.0

FetchOrganization = Callable[[RunwayCredential], Awaitable[OrganizationFacts]]


@dataclass
class _Mark:
    """A key refused by Runway for `scope` (a model, or ALL_MODELS) until `until` (monotonic)."""

    until: float
    reason: str
    strikes: int  # refusals in a row: the backoff step
    recheck: bool  # no Retry-After was given: read the organization again when due


@dataclass(eq=False)
class RunwayKey:
    """One key of the pool and what the pool knows of it. Its repr names it, never shows the secret."""

    credential: RunwayCredential
    facts: OrganizationFacts | None = None
    marks: dict[str, _Mark] = field(default_factory=dict)
    # model -> {task id: monotonic time created}: our tasks on this key not yet seen to end.
    active: dict[str, dict[str, float]] = field(default_factory=dict)
    # model -> creates we made since `facts` was read (the daily use Runway will report next time).
    created_since_facts: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.credential.name

    def __repr__(self) -> str:
        return f"RunwayKey({self.name!r})"

    def limits(self, model: str) -> ModelLimits:
        return self.facts.model(model) if self.facts is not None else ModelLimits()

    def in_flight(self, model: str, now: float) -> int:
        tasks = self.active.get(model)
        if not tasks:
            return 0
        for task_id in [t for t, at in tasks.items() if now - at > ACTIVE_HORIZON]:
            del tasks[task_id]
        return len(tasks)

    def daily_headroom(self, model: str) -> int | None:
        headroom = self.limits(model).daily_headroom
        return None if headroom is None else max(0, headroom - self.created_since_facts.get(model, 0))

    def out(self, model: str, now: float) -> tuple[str, float | None] | None:
        """Why the key cannot take a task for `model` now, and for how long if known; None: it can."""
        for scope in (ALL_MODELS, model):
            mark = self.marks.get(scope)
            if mark is not None and mark.until > now:
                return mark.reason, mark.until - now
        if self.facts is not None and self.facts.credits <= 0:
            return "no credits left (creditBalance 0)", None
        if self.daily_headroom(model) == 0:
            cap = self.limits(model).max_daily
            return f"the daily cap for {model} is used up ({cap} generations in 24 h)", None
        return None

    def all_in_flight(self, now: float) -> int:
        """Our tasks in flight on this key, every model together."""
        return sum(self.in_flight(model, now) for model in list(self.active))

    def load(self, model: str, now: float) -> tuple[float, int, float]:
        """The sort key of the module docstring (smaller is less loaded), without configuration order."""
        count = self.in_flight(model, now)
        limit = self.limits(model).max_concurrent
        ratio = count / limit if limit else 0.0
        headroom = self.daily_headroom(model)
        return ratio, count, -(float("inf") if headroom is None else float(headroom))


class KeyPool:
    """The configured keys, in configuration order. `fetch` reads one key's organization (the /v1 client's
    `organization`); `clock` is monotonic seconds (tests pass their own)."""

    def __init__(
        self,
        credentials: Sequence[RunwayCredential],
        *,
        fetch: FetchOrganization | None = None,
        clock: Callable[[], float] = time.monotonic,
        refresh_interval: float = REFRESH_INTERVAL,
        backoff: Sequence[float] = RECHECK_BACKOFF,
    ) -> None:
        if not credentials:
            raise ValueError("a key pool needs at least one key")
        self._keys = {c.name: RunwayKey(c) for c in credentials}
        if len(self._keys) != len(credentials):
            raise ValueError("key names must be unique")
        self._fetch = fetch
        self._clock = clock
        self._refresh_interval = refresh_interval
        self._backoff = tuple(backoff)
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def __repr__(self) -> str:
        return f"KeyPool({', '.join(self._keys)})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._keys)

    @property
    def keys(self) -> tuple[RunwayKey, ...]:
        return tuple(self._keys.values())

    @property
    def several(self) -> bool:
        """More than one key: choosing, failing over and reading organizations are on."""
        return len(self._keys) > 1

    def get(self, name: str) -> RunwayKey:
        """The key named `name` ("" is DEFAULT_KEY_NAME: records made before several keys existed).
        FailedPrecondition RUNWAY_KEY_NOT_CONFIGURED when this configuration has no such key: the video was
        made with a key that was removed since."""
        key = self._keys.get(name or DEFAULT_KEY_NAME)
        if key is None:
            shown = name or DEFAULT_KEY_NAME
            raise errors.FailedPrecondition(
                f"the video was made with Runway key {shown!r}, which is not configured any more "
                "(VIDEOGEN_RUNWAY_KEYS / RUNWAYML_API_SECRET)",
                reason="RUNWAY_KEY_NOT_CONFIGURED",
                metadata={"runway_key": shown},
            )
        return key

    # --- choosing -----------------------------------------------------------------------------------

    def for_upload(self) -> RunwayKey:
        """The key for an upload, which belongs to no model: among the keys not out for every model, the one
        with the fewest of our tasks in flight (Generates naming the upload will be held to it), then the
        first configured; the first key when all are out (Runway then says why)."""
        now = self._clock()
        order = {name: i for i, name in enumerate(self._keys)}
        usable = [k for k in self._keys.values() if k.out("", now) is None]
        if not usable:
            return self.keys[0]
        return min(usable, key=lambda k: (k.all_in_flight(now), order[k.name]))

    def candidates(self, model: str, *, exclude: Sequence[str] = ()) -> list[RunwayKey]:
        """The keys that can take a new task for `model` now, least loaded first (module docstring)."""
        now = self._clock()
        order = {name: i for i, name in enumerate(self._keys)}
        usable = [k for k in self._keys.values() if k.name not in exclude and k.out(model, now) is None]
        return sorted(usable, key=lambda k: (*k.load(model, now), order[k.name]))

    def exhausted(self, model: str, refused: dict[str, str] | None = None) -> errors.ResourceExhausted:
        """RESOURCE_EXHAUSTED for `model` when no key can take it: one QuotaFailure violation per key (its
        name, and why: `refused` for the keys this create tried, the pool's knowledge for the others), and
        a retry delay when every key's return is known."""
        now = self._clock()
        refused = refused or {}
        violations: list[tuple[str, str]] = []
        waits: list[float | None] = []
        for key in self._keys.values():
            out = key.out(model, now)
            reason, wait = out if out is not None else ("refused by Runway", None)
            violations.append((key.name, refused.get(key.name, reason)))
            waits.append(wait)
        known = [w for w in waits if w is not None]
        retry_after = min(known) if known and len(known) == len(waits) else None
        return errors.ResourceExhausted(
            f"every Runway key is out for {model}: "
            + "; ".join(f"{name}: {why}" for name, why in violations),
            reason="RUNWAY_KEYS_EXHAUSTED",
            retry_after=retry_after,
            violations=violations,
        )

    # --- what happened ------------------------------------------------------------------------------

    def started(self, name: str, model: str, task_id: str) -> None:
        """A task was created with key `name` for `model`: it counts as load until it ends."""
        key = self._keys.get(name)
        if key is None:
            return
        key.active.setdefault(model, {})[task_id] = self._clock()
        key.created_since_facts[model] = key.created_since_facts.get(model, 0) + 1
        # It took a task for the model: any mark of the model (or of all) is over, and so are its strikes.
        key.marks.pop(model, None)
        key.marks.pop(ALL_MODELS, None)

    def ended(self, name: str, task_id: str) -> None:
        """The task is over (finished, cancelled or gone): it no longer loads its key."""
        key = self._keys.get(name or DEFAULT_KEY_NAME)
        if key is None:
            return
        for tasks in key.active.values():
            tasks.pop(task_id, None)

    def mark(self, name: str, model: str | None, reason: str, retry_after: float | None) -> float:
        """Runway refused a create with key `name` in a way that proves no task was made: out for `model`
        (None: for every model). Returns the seconds it stays out."""
        key = self._keys[name]
        scope = model or ALL_MODELS
        previous = key.marks.get(scope)
        strikes = previous.strikes + 1 if previous is not None else 1
        if retry_after is not None:
            delay = retry_after
        else:
            delay = self._backoff[min(strikes, len(self._backoff)) - 1]
        key.marks[scope] = _Mark(self._clock() + delay, reason, strikes, recheck=retry_after is None)
        log.warning(
            "Runway key %r is out for %s: %s; not used for it for %.0fs",
            name,
            "every model" if model is None else model,
            reason,
            delay,
        )
        self._wake.set()
        return delay

    # --- organizations --------------------------------------------------------------------------------

    async def refresh(self, names: Sequence[str] | None = None) -> None:
        """Read the organization of the keys named (all by default), concurrently, best effort: a key whose
        read fails keeps what was known (logged; a key Runway refuses is logged loudly by the client)."""
        if self._fetch is None:
            return
        keys = [self._keys[n] for n in (names if names is not None else self._keys)]
        results = await asyncio.gather(*(self._fetch(k.credential) for k in keys), return_exceptions=True)
        for key, result in zip(keys, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                log.warning("could not read the organization of Runway key %r: %s", key.name, result)
                continue
            key.facts = result
            key.created_since_facts.clear()
            self._after_recheck(key)

    def _after_recheck(self, key: RunwayKey) -> None:
        """Fresh facts: a due re-check mark whose cause the organization no longer shows is dropped; one it
        still shows is extended by the next backoff step."""
        now = self._clock()
        for scope, mark in list(key.marks.items()):
            if mark.until > now:
                continue
            facts = key.facts
            still_out = facts is not None and (
                facts.credits <= 0
                if scope == ALL_MODELS
                else key.limits(scope).daily_headroom == 0 or facts.credits <= 0
            )
            if mark.recheck and still_out:
                step = self._backoff[min(mark.strikes + 1, len(self._backoff)) - 1]
                key.marks[scope] = _Mark(now + step, mark.reason, mark.strikes + 1, recheck=True)
            else:
                del key.marks[scope]

    async def start(self) -> None:
        """With several keys: read every key's organization (at most START_TIMEOUT: start-up never fails
        for a key Runway refuses or does not answer for), then keep them fresh in the background."""
        if not self.several or self._fetch is None or self._loop_task is not None:
            return
        try:
            await asyncio.wait_for(self.refresh(), START_TIMEOUT)
        except TimeoutError:
            log.warning("reading the Runway keys' organizations took over %.0fs; going on", START_TIMEOUT)
        for key in self._keys.values():
            facts = key.facts
            if facts is not None:
                log.info("Runway key %r: %d credits", key.name, facts.credits)
        self._loop_task = asyncio.create_task(self._run(), name="runway-key-pool")

    async def aclose(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _next_due(self, now: float) -> float:
        """Seconds until the next refresh: the periodic one, or a refused key's re-check, if sooner."""
        due = [m.until for k in self._keys.values() for m in k.marks.values() if m.recheck]
        return max(0.0, min([now + self._refresh_interval, *due]) - now)

    async def _run(self) -> None:
        last_full = self._clock()
        while True:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_due(self._clock()))
            now = self._clock()
            if now - last_full >= self._refresh_interval:
                names = None
                last_full = now
            else:
                names = [k.name for k in self._keys.values() if _recheck_due(k, now)]
                if not names:
                    continue
            try:
                await self.refresh(names)
            except Exception:  # a bug: the pool still serves with what it knows
                log.exception("refreshing the Runway keys failed")
            # A re-check that could not be made (the read failed): the mark has run out, so the key is
            # tried again by the next create, whose answer decides; not re-checked in a loop meanwhile.
            for key in self._keys.values():
                for mark in key.marks.values():
                    if mark.recheck and mark.until <= self._clock():
                        mark.recheck = False


def _recheck_due(key: RunwayKey, now: float) -> bool:
    return any(m.recheck and m.until <= now for m in key.marks.values())
