"""`videogen-server` / `python -m videogen_server`: run the service until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING

from videogen_server import __version__
from videogen_server.app import App
from videogen_server.config import Config, ConfigError, trace_exporters
from videogen_server.observability import logs

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


def _tracer_provider() -> TracerProvider | None:
    """From the standard OTEL_* variables; None (OpenTelemetry not even imported) when they ask for none."""
    if not trace_exporters(os.environ):
        return None
    from videogen_server.observability.tracing import provider_from_env

    return provider_from_env(os.environ, version=__version__)


async def serve(config: Config, tracer_provider: TracerProvider | None = None) -> None:
    app = App(config, tracer_provider=tracer_provider)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger(__name__).info("signal received: shutting down (grace %.0fs)", config.shutdown_grace)
    await app.stop()
    if tracer_provider is not None:
        await asyncio.to_thread(tracer_provider.shutdown)  # flushes the last spans: network I/O


_EPILOG = """\
configuration is by environment variable (the README's "Configuration" and "Operations" list them all):
  RUNWAYML_API_SECRET       Runway API key; unset: the built-in Runway simulator
  VIDEOGEN_LISTEN           gRPC address (127.0.0.1:50051)
  VIDEOGEN_METRICS_LISTEN   Prometheus /metrics address (127.0.0.1:9464; 'off' serves none)
  VIDEOGEN_DATA_DIR         job store directory (./.videogen)
  VIDEOGEN_API_KEYS         caller keys, name:key,name:key (unset: no caller auth)
  VIDEOGEN_LOG_FORMAT       text or json (text); VIDEOGEN_LOG_LEVEL (INFO)
  OTEL_TRACES_EXPORTER      otlp or console turns tracing on (so does OTEL_EXPORTER_OTLP_ENDPOINT)

stops on SIGTERM or SIGINT, giving streams in flight VIDEOGEN_SHUTDOWN_GRACE seconds (10).
"""


def _parse_args(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(
        prog="videogen-server",
        description="Run the videogen gRPC service (videogen.v1.VideoService) in front of Runway.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    _parse_args(argv)
    problem = logs.configure()
    log = logging.getLogger(__name__)
    if problem:
        log.warning("%s; using the default", problem)
    try:
        config = Config.from_env()
        tracer_provider = _tracer_provider()
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        raise SystemExit(2) from None
    if tracer_provider is not None:
        log.info("tracing on: spans to %s", ", ".join(trace_exporters(os.environ)))
    asyncio.run(serve(config, tracer_provider))


if __name__ == "__main__":
    main()
