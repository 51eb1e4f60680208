"""`videogen-server` / `python -m videogen_server`: run the service until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from .app import App
from .config import Config, ConfigError


def _configure_logging() -> None:
    level = os.environ.get("VIDEOGEN_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request URL at INFO; output URLs carry signed tokens, so keep it quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def serve(config: Config) -> None:
    app = App(config)
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger(__name__).info("signal received: shutting down (grace %.0fs)", config.shutdown_grace)
    await app.stop()


def main() -> None:
    _configure_logging()
    try:
        config = Config.from_env()
    except ConfigError as exc:
        logging.getLogger(__name__).error("configuration error: %s", exc)
        raise SystemExit(2) from None
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
