"""Shared helpers of the fault suite (imported as `faults.helpers`)."""

from __future__ import annotations

import asyncio

import httpx
from conftest import RunningServer
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.simulator import RunwaySimulator, SimulatorConfig

# Tasks that stay RUNNING for the whole test: a Get that reaches Runway answers IN_PROGRESS, a Get served
# from the record answers QUEUED (what Generate recorded). That difference is what the read tests assert.
LONG_RUNNING = SimulatorConfig(
    pending_seconds=0.05, running_seconds=600.0, max_concurrency=None, output_size=1024 * 1024
)


async def running_video(server: RunningServer) -> video_pb2.Video:
    """A video whose Runway task is RUNNING while its record still says QUEUED (nobody polled yet)."""
    video = (await server.stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="a boat", seconds=5))).video
    async with asyncio.timeout(10):
        # The simulator's clock moves the task on; there is no event to wait for.
        while server.simulator.task_status(video.upstream_task_id) != "RUNNING":  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    done: video_pb2.Video = video
    return done


def gets(sim: RunwaySimulator) -> int:
    return sim.request_counts[("GET", "/v1/tasks/{id}")]


def posts(sim: RunwaySimulator, endpoint: str = "text_to_video") -> int:
    return sim.request_counts[("POST", f"/v1/{endpoint}")]


def outputs(sim: RunwaySimulator) -> int:
    return sim.request_counts[("GET", "output")]


async def sim_tasks(sim: RunwaySimulator) -> int:
    """How many tasks the simulator holds (its admin /_sim/stats route): tasks Runway would bill."""
    async with httpx.AsyncClient() as client:
        stats = (await client.get(f"{sim.base_url}/_sim/stats")).json()
    tasks: int = stats["tasks"]
    return tasks
