"""limits.py: the global cap and each caller's share of it (issue 8, item 7); config validation of both."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from videogen_server import errors
from videogen_server.api.limits import ConcurrencyLimit, StreamLimits
from videogen_server.config import Config, ConfigError, default_share


def limit(cap: int, share: int | None = None) -> ConcurrencyLimit:
    return ConcurrencyLimit("things", cap, subject="MAX_THINGS", per_caller=share)


def refused(lim: ConcurrencyLimit, caller: str) -> str:
    with pytest.raises(errors.ResourceExhausted) as info, lim.hold(caller):
        pass
    assert info.value.reason == "CONCURRENCY_LIMIT_EXCEEDED" and info.value.retry_after == 1.0
    return info.value.subject


def test_a_caller_gets_its_share_and_others_the_rest() -> None:
    lim = limit(4)  # share: 2
    with ExitStack() as held:
        held.enter_context(lim.hold("a"))
        held.enter_context(lim.hold("a"))
        assert refused(lim, "a") == "MAX_THINGS_PER_CALLER"
        assert (lim.in_use, lim.held_by("a")) == (2, 2)  # a refusal holds nothing
        held.enter_context(lim.hold("b"))
        held.enter_context(lim.hold("c"))
        # Full: the global cap is what everyone hears, including a caller at its own share.
        assert refused(lim, "d") == "MAX_THINGS"
        assert refused(lim, "a") == "MAX_THINGS"
        assert lim.callers == 3
    assert (lim.in_use, lim.callers) == (0, 0)


def test_entries_are_dropped_at_zero_whatever_ends_the_hold() -> None:
    lim = limit(1000, 10)
    for n in range(500):  # many callers come and go: nothing stays behind
        with lim.hold(f"caller-{n}"):
            assert lim.callers == 1
    assert lim.callers == 0
    with pytest.raises(RuntimeError), lim.hold("x"), lim.hold("x"):
        raise RuntimeError("the stream failed")
    assert (lim.in_use, lim.callers, lim.held_by("x")) == (0, 0, 0)


def test_share_defaults_to_half_at_least_one_and_is_checked() -> None:
    assert [default_share(n) for n in (1, 2, 3, 256, 10_000)] == [1, 1, 1, 128, 5000]
    assert limit(3).per_caller == 1
    assert limit(3, 3).per_caller == 3  # equal to the cap: no per-caller share
    for bad in (0, 4):
        with pytest.raises(ValueError, match="per-caller"):
            limit(3, bad)
    limits = StreamLimits.of(10, 20)
    assert (limits.streams.per_caller, limits.watchers.per_caller) == (5, 10)
    assert limits.streams.per_caller_subject == "VIDEOGEN_MAX_STREAMS_PER_CALLER"
    assert limits.watchers.per_caller_subject == "VIDEOGEN_MAX_WATCHERS_PER_CALLER"


def test_per_caller_limits_come_from_the_environment() -> None:
    config = Config.from_env(
        {
            "VIDEOGEN_MAX_STREAMS": "10",
            "VIDEOGEN_MAX_STREAMS_PER_CALLER": "3",
            "VIDEOGEN_MAX_WATCHERS": "8",
            "VIDEOGEN_MAX_WATCHERS_PER_CALLER": "8",
        }
    )
    assert (config.streams_per_caller, config.watchers_per_caller) == (3, 8)
    keys = {"VIDEOGEN_API_KEYS": "alice:alice-key-0123456789,bob:bob-key-0123456789ab"}
    defaults = Config.from_env(keys)
    assert (defaults.streams_per_caller, defaults.watchers_per_caller) == (128, 5000)
    assert Config.from_env({**keys, "VIDEOGEN_MAX_STREAMS": "3"}).streams_per_caller == 1
    assert Config(max_watchers=7, api_keys={"a": "a-key-0123456789abc"}).watchers_per_caller == 3


def test_without_caller_keys_the_one_anonymous_caller_gets_the_whole_cap() -> None:
    # A share would only halve the server's capacity: every call is the same caller.
    defaults = Config.from_env({})
    assert (defaults.streams_per_caller, defaults.watchers_per_caller) == (256, 10_000)
    assert Config.from_env({"VIDEOGEN_MAX_STREAMS_PER_CALLER": "4"}).streams_per_caller == 4


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"VIDEOGEN_MAX_STREAMS_PER_CALLER": "0"}, "VIDEOGEN_MAX_STREAMS_PER_CALLER"),
        ({"VIDEOGEN_MAX_WATCHERS_PER_CALLER": "-2"}, "VIDEOGEN_MAX_WATCHERS_PER_CALLER"),
        ({"VIDEOGEN_MAX_STREAMS_PER_CALLER": "half"}, "VIDEOGEN_MAX_STREAMS_PER_CALLER"),
        # Above the global cap: refused at start-up, not clamped.
        ({"VIDEOGEN_MAX_STREAMS_PER_CALLER": "257"}, "VIDEOGEN_MAX_STREAMS_PER_CALLER"),
        (
            {"VIDEOGEN_MAX_WATCHERS": "10", "VIDEOGEN_MAX_WATCHERS_PER_CALLER": "11"},
            "VIDEOGEN_MAX_WATCHERS_PER_CALLER",
        ),
    ],
)
def test_bad_per_caller_limits_are_config_errors(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Config.from_env(env)
