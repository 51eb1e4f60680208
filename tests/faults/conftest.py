"""Fixtures for the fault suite: the real server against the simulator, tuned for each kind of fault."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import FAST_SIMULATOR, RunningServer, start_server, stop_server
from faults.helpers import LONG_RUNNING


# The fault suite's content tests exercise the relay from Runway (cut bodies, expired URLs, a slow or down
# CDN): with the archive on (the default), a finished video's copy races them and, once archived, is served
# from the archive instead. They run with the archive off; the archive's own faults are in
# test_archive_faults.py, which builds its servers itself.
@pytest.fixture
async def videogen_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    server = await start_server(str(tmp_path / "data"), archive="off")
    try:
        yield server
    finally:
        await stop_server(server)


@pytest.fixture
async def long_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    server = await start_server(str(tmp_path / "data"), sim_config=LONG_RUNNING)
    try:
        yield server
    finally:
        await stop_server(server)


@pytest.fixture
async def external_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The server pointed at the simulator as an external Runway (RUNWAYML_BASE_URL), as in production."""
    server = await start_server(
        str(tmp_path / "data"),
        sim_config=dataclasses.replace(FAST_SIMULATOR),
        runway_api_secret="key_test",
        archive="off",  # see `videogen_server` above
    )
    try:
        yield server
    finally:
        await stop_server(server)
