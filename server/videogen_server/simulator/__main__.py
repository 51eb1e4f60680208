"""``python -m videogen_server.simulator``: run the Runway simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

from videogen_server.simulator.accounts import parse_keys
from videogen_server.simulator.config import SimulatorConfig
from videogen_server.simulator.server import RunwaySimulator

log = logging.getLogger("videogen_server.simulator")


def _parser() -> argparse.ArgumentParser:
    d = SimulatorConfig()
    p = argparse.ArgumentParser(prog="python -m videogen_server.simulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--api-key", default=os.environ.get("RUNWAYML_API_SECRET", "key_sim"))
    p.add_argument("--pending-seconds", type=float, default=d.pending_seconds)
    p.add_argument("--running-seconds", type=float, default=d.running_seconds)
    p.add_argument("--output-size", type=int, default=d.output_size, help="bytes per output MP4")
    p.add_argument("--max-concurrency", type=int, default=d.max_concurrency, help="per model; 0 = unlimited")
    p.add_argument("--output-url-ttl", type=float, default=d.output_url_ttl)
    p.add_argument("--credits", type=int, default=d.credits)
    p.add_argument("--daily-limit", type=int, default=None)
    p.add_argument(
        "--keys",
        default="",
        help="more keys, name:secret,name2:secret2, each its own organization (credits and caps set through "
        "POST /_sim/keys/NAME); --api-key is the key named 'default'",
    )
    return p


async def _serve(args: argparse.Namespace) -> None:
    config = SimulatorConfig(
        pending_seconds=args.pending_seconds,
        running_seconds=args.running_seconds,
        output_size=args.output_size,
        max_concurrency=args.max_concurrency or None,
        output_url_ttl=args.output_url_ttl,
        credits=args.credits,
        daily_limit=args.daily_limit,
    )
    sim = RunwaySimulator(api_key=args.api_key, config=config, keys=parse_keys(args.keys))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    url = await sim.start(host=args.host, port=args.port)
    log.info("Runway simulator listening on %s (set RUNWAYML_BASE_URL=%s)", url, url)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
