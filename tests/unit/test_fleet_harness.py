"""The arithmetic of the fleet harness's GET sampler (tests/fleet_harness.py), on made-up samples: the fault
suite's timing verdicts rest on it."""

from __future__ import annotations

from typing import Any, cast

import pytest
from fleet_harness import GetSampler


def sampler(samples: list[tuple[float, int]]) -> GetSampler:
    s = GetSampler(cast(Any, None), period=0.05)
    s.samples = samples
    return s


def test_each_request_is_dated_at_the_sample_that_first_counted_it() -> None:
    s = sampler([(0.0, 10), (0.5, 10), (1.0, 12), (1.5, 12), (2.0, 13)])
    assert s.request_times() == [1.0, 1.0, 2.0]
    assert s.count_between(0.9, 1.9) == 2
    assert s.first_after(1.1) == 2.0
    assert s.first_after(2.1) is None


def test_the_largest_gap_counts_the_window_bounds() -> None:
    s = sampler([(0.0, 0), (1.0, 1), (1.5, 2), (4.0, 3)])
    assert s.largest_gap(0.5, 3.0) == pytest.approx(1.5)  # 1.5 -> 3.0: nothing after the last request
    assert s.largest_gap(0.0, 5.0) == pytest.approx(2.5)  # 1.5 -> 4.0
    assert s.largest_gap(2.0, 3.0) == pytest.approx(1.0)  # no request at all in the window
