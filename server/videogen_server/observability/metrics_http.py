"""Serves `/metrics` (Prometheus text or OpenMetrics, by the scraper's Accept header) on its own port with
aiohttp, in the service's event loop. A scrape only reads in-process counters: nothing blocks the loop."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

log = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:9464' / '[::1]:9464' / ':9464' (all interfaces) -> (host, port)."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"a metrics address must look like host:port, got {listen!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


async def _index(_: web.Request) -> web.Response:
    return web.Response(text="videogen metrics: see /metrics\n")


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, listen: str) -> None:
        self._host, self._port = parse_listen(listen)
        app = web.Application()
        app.router.add_get("/metrics", make_aiohttp_handler(registry))
        app.router.add_get("/", _index)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self.port = 0

    async def start(self) -> int:
        """Bind and serve; returns the bound port (useful with port 0)."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_port=False)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        self.port = int(self._runner.addresses[0][1])
        log.info("metrics on http://%s:%d/metrics", _display(self._host), self.port)
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()


def _display(host: str) -> str:
    return f"[{host}]" if ":" in host else host
