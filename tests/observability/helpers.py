"""Helpers for the observability tests: scraping /metrics, and a server with tracing on."""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc
import httpx
from conftest import FAST_SIMULATOR, RunningServer
from prometheus_client.parser import text_string_to_metric_families
from videogen.v1 import video_service_pb2_grpc
from videogen_server.api.server import App
from videogen_server.config import Config
from videogen_server.simulator import RunwaySimulator, SimulatorConfig

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> tuple[str, Samples]:
    """GET /metrics over HTTP: the text and every sample by (name, labels)."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def start_app(data_dir: str, *, sim_config: SimulatorConfig | None = None, **app: Any) -> RunningServer:
    """Like conftest.start_server, with App fields (e.g. tracer_provider) besides the Config."""
    sim = RunwaySimulator(
        api_key="key_test_observability", config=dataclasses.replace(sim_config or FAST_SIMULATOR)
    )
    config = Config(listen="127.0.0.1:0", data_dir=data_dir, poll_interval=0.1, **app.pop("config", {}))
    application = App(config, simulator=sim, **app)
    port = await application.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = video_service_pb2_grpc.VideoServiceStub(channel)
    return RunningServer(application, f"127.0.0.1:{port}", sim, channel, stub)
