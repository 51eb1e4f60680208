"""The benchmarks (bench/) are not run by `make test` (they take minutes): at least they must import, so that
a module moved or renamed in the server cannot leave `make bench` broken unnoticed."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(BENCH)]))


def test_there_are_benchmarks() -> None:
    assert {"run", "common", "generate_latency"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_module_imports(name: str) -> None:
    importlib.import_module(f"bench.{name}")
