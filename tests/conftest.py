"""Shared fixtures: the real service on a loopback port, against the Runway simulator (a real HTTP server)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from hypothesis import settings
from redis_server import RedisServer, require_redis_server
from task_dump import dump_tasks_after
from videogen.v1 import video_service_pb2_grpc
from videogen_server.api.server import App
from videogen_server.config import Config
from videogen_server.simulator import RunwaySimulator, SimulatorConfig

# Property tests draw the same examples on every run (`make test` and CI must not pass or fail by luck);
# HYPOTHESIS_PROFILE=explore searches afresh, for a session spent looking for new counterexamples.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

FAST_SIMULATOR = SimulatorConfig(
    pending_seconds=0.15,
    running_seconds=0.5,
    output_size=1024 * 1024,
)


@dataclass
class RunningServer:
    app: App
    address: str
    simulator: RunwaySimulator
    channel: grpc.aio.Channel
    stub: video_service_pb2_grpc.VideoServiceStub
    external_simulator: bool = False  # the simulator runs beside the app, not inside it

    def metadata(self, key: str | None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key}"),) if key else ()


async def start_server(
    data_dir: str,
    *,
    simulator: RunwaySimulator | None = None,
    sim_config: SimulatorConfig | None = None,
    **config: Any,
) -> RunningServer:
    sim = simulator or RunwaySimulator(
        api_key="key_test", config=dataclasses.replace(sim_config or FAST_SIMULATOR)
    )
    settings: dict[str, Any] = {"listen": "127.0.0.1:0", "data_dir": data_dir, "poll_interval": 0.1}
    settings.update(config)
    external = "runway_api_secret" in settings
    if external:
        # The "real Runway" path: the server is pointed at an external Runway-compatible URL.
        settings["runway_base_url"] = await sim.start(host="127.0.0.1", port=0)
    app = App(Config(**settings), simulator=None if external else sim)
    port = await app.start()
    address = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(address)
    stub = video_service_pb2_grpc.VideoServiceStub(channel)
    return RunningServer(app, address, sim, channel, stub, external_simulator=external)


# A stop that takes this long is hung (it takes well under a second): say where, before pytest-timeout
# ends the test with thread stacks that only show the event loop idle.
STOP_DUMP_AFTER_S = 20.0


async def stop_server(server: RunningServer) -> None:
    with dump_tasks_after(STOP_DUMP_AFTER_S, f"stopping the server at {server.address}"):
        await server.channel.close()
        await server.app.stop(grace=0.5)
        if server.external_simulator:
            await server.simulator.stop()


@pytest.fixture
async def videogen_server(tmp_path: Any) -> AsyncIterator[RunningServer]:
    server = await start_server(str(tmp_path / "data"))
    try:
        yield server
    finally:
        await stop_server(server)


@pytest.fixture
def redis_server(tmp_path: Any) -> Iterator[RedisServer]:
    """A real redis-server for this test (tests/redis_server.py), its data under the test's tmp_path; stopped
    after it, also when the test left it SIGSTOPped. Skipped without redis-server (failed in CI)."""
    require_redis_server()
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
