"""`videogen-server` / `python -m videogen_server`: run the service until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from videogen_server import __version__
from videogen_server.api.server import App
from videogen_server.config import (
    DEFAULT_METRICS_LISTEN,
    Config,
    ConfigError,
    LogSettings,
    TracingSettings,
)
from videogen_server.observability import logs

if TYPE_CHECKING:
    from videogen_server.observability.tracing import BoundedTracerProvider

log = logging.getLogger(__name__)

# After the service stopped (within VIDEOGEN_SHUTDOWN_GRACE), the last spans get this long to leave: an
# exporter retrying an endpoint where nothing listens must not hold the exit.
TRACING_FLUSH_SECONDS = 1.0


def _tracer_provider(settings: TracingSettings) -> BoundedTracerProvider | None:
    """None (OpenTelemetry not even imported) when the settings ask for no tracing."""
    if not settings.enabled:
        return None
    from videogen_server.observability.tracing import tracer_provider

    return tracer_provider(settings, version=__version__)


async def serve(config: Config, tracer_provider: BoundedTracerProvider | None = None) -> None:
    """Serve until SIGTERM or SIGINT. A start that fails (a taken port: ConfigError) raises, having stopped
    what it had started."""
    try:
        app = App(config, tracer_provider=tracer_provider)
        await app.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("signal received: shutting down (grace %gs)", config.shutdown_grace)
        await app.stop()
    finally:
        if tracer_provider is not None:
            # Flushes the last spans (network I/O, off the loop), for a bounded time.
            flushed = await asyncio.to_thread(tracer_provider.shutdown_within, TRACING_FLUSH_SECONDS)
            if not flushed:
                log.warning(
                    "tracing: the last spans could not be exported within %gs: dropped", TRACING_FLUSH_SECONDS
                )


def _epilog() -> str:
    """The variables most runs need, with their defaults (from config.py, where each is defined once)."""
    config, logging_ = Config(), LogSettings()
    grace = config.shutdown_grace
    return f"""\
configuration is by environment variable (the README's "Configuration" and "Operations" list them all):
  RUNWAYML_API_SECRET       Runway API key; unset: the built-in Runway simulator
  VIDEOGEN_RUNWAY_KEYS      several Runway keys, name:secret,name:secret (or VIDEOGEN_RUNWAY_KEYS_FILE)
  VIDEOGEN_LISTEN           gRPC address ({config.listen})
  VIDEOGEN_METRICS_LISTEN   Prometheus /metrics address ({DEFAULT_METRICS_LISTEN}; 'off' serves none)
  VIDEOGEN_DATA_DIR         job store directory ({config.data_dir})
  VIDEOGEN_STORE            sqlite (the data dir), sqlite:///path.db or redis://host:port/db ({config.store})
  VIDEOGEN_ARCHIVE          file:///dir, s3://bucket/prefix (AWS_* variables) or off ({config.archive_url})
  VIDEOGEN_API_KEYS         caller keys, name:key,name:key (unset: no caller auth)
  VIDEOGEN_LOG_FORMAT       text or json ({logging_.format}); VIDEOGEN_LOG_LEVEL ({logging_.level})
  OTEL_TRACES_EXPORTER      otlp or console turns tracing on (so does OTEL_EXPORTER_OTLP_ENDPOINT)

stops on SIGTERM or SIGINT, giving streams in flight VIDEOGEN_SHUTDOWN_GRACE seconds ({grace:g}).
"""


def _parse_args(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(
        prog="videogen-server",
        description="Run the videogen gRPC service (videogen.v1.VideoService) in front of Runway.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    _parse_args(argv)
    problem = logs.configure(LogSettings.from_env())
    if problem:
        log.warning("%s; using the default", problem)
    try:
        config = Config.from_env()
        tracing = TracingSettings.from_env()
        tracer_provider = _tracer_provider(tracing)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        raise SystemExit(2) from None
    if tracer_provider is not None:
        log.info("tracing on: spans to %s", ", ".join(_destinations(tracing)))
    try:
        asyncio.run(serve(config, tracer_provider))
    except ConfigError as exc:  # found at start-up: a taken port
        log.error("configuration error: %s", exc)
        raise SystemExit(2) from None


def _destinations(tracing: TracingSettings) -> list[str]:
    """'otlp (http://collector:4318/v1/traces)', 'console': the endpoint without credentials (config.py)."""
    return [f"{name} ({tracing.otlp_endpoint})" if name == "otlp" else name for name in tracing.exporters]


if __name__ == "__main__":
    main()
