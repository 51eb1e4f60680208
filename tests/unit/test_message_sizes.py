"""StreamContent's message sizes for an archived read (services/message_sizes.py): they grow for a reader
that keeps up, never for a slow or bursty one, and fall back at once when a fast reader pauses. Takes are
given as (bytes, seconds): no clock, no timing in the test."""

from __future__ import annotations

import pytest
from videogen_server.services.message_sizes import FAST_RATE, MAX_MESSAGE, RAMP, WINDOW, MessageSizes

KiB = 1024
FLOOR = 256 * KiB


def run(sizes: MessageSizes, total: int, rate: float) -> list[int]:
    """Sends `total` bytes to a reader taking them at `rate` bytes/s; the sizes sent."""
    sent: list[int] = []
    while sum(sent) < total:
        size = sizes()
        sent.append(size)
        sizes.taken(size, size / rate)
    return sent


def test_a_fast_reader_gets_the_floor_until_ramp_then_doubling_to_the_ceiling() -> None:
    sent = run(MessageSizes(FLOOR), 64 * 1024 * KiB, rate=4 * FAST_RATE)
    ramp = RAMP // FLOOR
    assert sent[:ramp] == [FLOOR] * ramp  # the window and buffers fill at any pace: no growth yet
    assert sent[ramp : ramp + 3] == [2 * FLOOR, MAX_MESSAGE, MAX_MESSAGE]
    assert set(sent[ramp + 1 :]) == {MAX_MESSAGE}


def test_a_slow_reader_never_gets_more_than_the_floor() -> None:
    assert set(run(MessageSizes(FLOOR), 256 * 1024 * KiB, rate=10 * 1024 * KiB)) == {FLOOR}
    assert set(run(MessageSizes(FLOOR), 256 * 1024 * KiB, rate=FAST_RATE / 2)) == {FLOOR}


def test_a_bursty_slow_reader_stays_at_the_floor() -> None:
    """Takes 3 messages at once, then sleeps as long as 10 MiB/s allows (bench/slow_readers.py's reader)."""
    sizes = MessageSizes(FLOOR)
    seen = set()
    for i in range(2000):
        size = sizes()
        seen.add(size)
        sizes.taken(size, 0.0 if i % 4 else 4 * size / (10 * 1024 * KiB))
    assert seen == {FLOOR}


def test_a_fast_reader_that_pauses_gets_the_floor_at_once_then_grows_again() -> None:
    sizes = MessageSizes(FLOOR)
    run(sizes, RAMP + 8 * MAX_MESSAGE, rate=4 * FAST_RATE)
    assert sizes() == MAX_MESSAGE
    sizes.taken(MAX_MESSAGE, 0.5)  # the reader stopped for half a second
    assert sizes() == FLOOR
    after = run(sizes, 2 * WINDOW + 8 * MAX_MESSAGE, rate=4 * FAST_RATE)
    assert after[0] == FLOOR and after[-1] == MAX_MESSAGE  # once the pause is out of the window


def test_one_slow_take_in_a_fast_window_does_not_shrink() -> None:
    """A fast reader on a busy host sometimes waits a few ms for one message: the window's rate decides."""
    sizes = MessageSizes(FLOOR)
    run(sizes, RAMP + 8 * MAX_MESSAGE, rate=8 * FAST_RATE)
    sizes.taken(MAX_MESSAGE, 3 * MAX_MESSAGE / FAST_RATE)  # 3x slower than FAST_RATE, once
    assert sizes() == MAX_MESSAGE


def test_a_zero_second_take_counts_as_fast_and_bounds_hold() -> None:
    sizes = MessageSizes(FLOOR, ceiling=512 * KiB)
    for _ in range(RAMP // FLOOR + 10):
        sizes.taken(sizes(), 0.0)
    assert sizes() == 512 * KiB
    assert MessageSizes(2 * MAX_MESSAGE)() == 2 * MAX_MESSAGE  # a floor above the ceiling stays the floor
    with pytest.raises(ValueError):
        MessageSizes(0)
