"""Shared fixtures: a fast simulator on loopback and an httpx client with Runway's headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from videogen_server.simulator import RunwaySimulator, SimulatorConfig

API_KEY = "key_test"
HEADERS = {"Authorization": f"Bearer {API_KEY}", "X-Runway-Version": "2024-11-06"}
GEN45_T2V: dict[str, Any] = {"model": "gen4.5", "promptText": "a red fox", "ratio": "1280:720", "duration": 5}


def fast_config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {
        "pending_seconds": 0.05,
        "running_seconds": 0.15,
        "output_size": 300_000,
        "max_concurrency": 2,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


@pytest.fixture
async def sim() -> AsyncIterator[RunwaySimulator]:
    simulator = RunwaySimulator(api_key=API_KEY, config=fast_config())
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def http(sim: RunwaySimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, headers=HEADERS, timeout=10) as client:
        yield client
