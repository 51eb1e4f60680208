"""Wiring: builds the service from a Config, starts the gRPC server (health, reflection, interceptors) and
stops it gracefully. `main.py` runs it as a process; tests start it in-process on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from videogen.v1 import video_service_pb2, video_service_pb2_grpc

from .api.interceptors import Authenticator, ServiceInterceptor
from .api.servicer import VideoServicer
from .config import Config
from .content import ContentRelay
from .runway import RunwayClient
from .simulator import RunwaySimulator
from .store import open_store
from .store.base import VideoStore
from .videos import Videos
from .watch import TaskTracker

log = logging.getLogger(__name__)

SERVICE_NAME = video_service_pb2.DESCRIPTOR.services_by_name["VideoService"].full_name

SERVER_OPTIONS = [
    # One process owns its port: a second server must fail to bind, not silently share it.
    ("grpc.so_reuseport", 0),
    # Find dead peers on long, quiet WatchStatus streams.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


@dataclass
class App:
    config: Config
    simulator: RunwaySimulator | None = None
    port: int = 0
    server: grpc.aio.Server | None = None
    health: health.aio.HealthServicer | None = None
    runway: RunwayClient | None = None
    store: VideoStore | None = None
    tracker: TaskTracker | None = None
    videos: Videos | None = None
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> int:
        cfg = self.config
        if cfg.use_simulator:
            # No Runway key: run the built-in simulator on loopback with a key of its own.
            key = "key_sim_" + secrets.token_hex(16)
            self.simulator = self.simulator or RunwaySimulator(api_key=key)
            base_url = await self.simulator.start(host="127.0.0.1", port=0)
            api_key = self.simulator.api_key
            upstream = f"the built-in Runway simulator at {base_url}"
        else:
            assert cfg.runway_api_secret is not None
            base_url, api_key = cfg.runway_base_url, cfg.runway_api_secret
            upstream = f"Runway at {base_url}"
        self.runway = RunwayClient(base_url, api_key)
        self.store = open_store(cfg.data_dir)
        await self.store.open()
        runway = self.runway
        self.tracker = TaskTracker(
            self.store,
            lambda task_id, deadline: runway.get_task(task_id, deadline=deadline),
            poll_interval=cfg.poll_interval,
            freshness=cfg.freshness,
            heartbeat=cfg.watch_heartbeat,
        )
        self.videos = Videos(self.store, runway, self.tracker)
        relay = ContentRelay(self.videos, runway, chunk_size=cfg.chunk_size)

        server = grpc.aio.server(
            interceptors=[ServiceInterceptor(Authenticator(cfg.api_keys))], options=SERVER_OPTIONS
        )
        video_service_pb2_grpc.add_VideoServiceServicer_to_server(
            VideoServicer(self.videos, self.tracker, relay), server
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        self.port = server.add_insecure_port(cfg.listen)
        if self.port == 0:
            raise OSError(f"could not listen on {cfg.listen}")
        await server.start()
        self.server = server
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        host = cfg.listen.rsplit(":", 1)[0]
        log.info(
            "videogen listening on %s:%d; upstream: %s; data dir %s; caller auth %s",
            host,
            self.port,
            upstream,
            cfg.data_dir,
            "on" if cfg.api_keys else "off",
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        """Health turns NOT_SERVING, new calls are refused, calls in flight get `grace` seconds."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.shutdown_grace if grace is None else grace
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(grace)
        if self.tracker is not None:
            await self.tracker.close()
        if self.runway is not None:
            await self.runway.aclose()
        if self.store is not None:
            await self.store.close()
        if self.simulator is not None:
            with contextlib.suppress(Exception):
                await self.simulator.stop()
        log.info("videogen stopped")

    async def wait(self) -> None:
        if self.server is not None:
            await self.server.wait_for_termination()
