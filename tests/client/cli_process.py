"""The ``videogen`` command as a child process (the console script installed next to the interpreter), for
tests of what a user or a script actually sees: exit codes, stderr lines, signals."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

VIDEOGEN = Path(sys.executable).parent / "videogen"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a CLI child: no VIDEOGEN_* or GRPC_* settings leak in from the test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDEOGEN_", "GRPC_"))}
    env.update(extra or {})
    return env


async def start_cli(*argv: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Starts ``videogen ARGV...``; the test's event loop keeps serving while it runs."""
    return await asyncio.create_subprocess_exec(
        str(VIDEOGEN),
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else cli_env(),
    )


async def finish(proc: asyncio.subprocess.Process, limit: float = 60.0) -> CliResult:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"videogen did not exit within {limit}s; stderr: {err.decode()!r}") from None
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


async def run_cli(*argv: str, env: dict[str, str] | None = None, limit: float = 60.0) -> CliResult:
    return await finish(await start_cli(*argv, env=env), limit)
