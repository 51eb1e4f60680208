"""Say where a teardown hangs: every asyncio task's chain of awaits, down to the future it waits on.

pytest-timeout prints thread stacks only; for a hang in `await app.stop()` the main thread is just idle in
the event loop's select, which says nothing about *which* await never ends. `stop_server` (conftest.py)
arms `dump_tasks_after`: if stopping has not finished after a while, every task's await chain is logged
(shown under "Captured log teardown" when the test then times out) and printed to stderr.

Python 3.11's `Task.print_stack` shows only a task's outermost frame (a suspended coroutine has no
`f_back`), so the chain is walked here through `cr_await` / `ag_await` / `gi_yieldfrom`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import Iterator
from types import AsyncGeneratorType, CoroutineType, FrameType
from typing import Any

log = logging.getLogger("tests.task_dump")


def _awaited_frames(coro: Any) -> Iterator[FrameType]:
    """The frame of each link of the await chain that starts at `coro` (coroutines, async generators,
    generator-based awaitables), outermost first."""
    seen: set[int] = set()
    while coro is not None and id(coro) not in seen:
        seen.add(id(coro))
        for frame_attr, next_attr in (
            ("cr_frame", "cr_await"),
            ("ag_frame", "ag_await"),
            ("gi_frame", "gi_yieldfrom"),
        ):
            if hasattr(coro, frame_attr):
                frame = getattr(coro, frame_attr)
                if frame is not None:
                    yield frame
                coro = getattr(coro, next_attr)
                break
        else:
            # An async generator's asend/athrow awaitable (a fixture's teardown) names no frame; the
            # generator it drives is among its referents.
            driven = [r for r in gc.get_referents(coro) if isinstance(r, AsyncGeneratorType)]
            if not driven:
                return
            coro = driven[0]


def format_task(task: asyncio.Task[Any]) -> str:
    lines = [f"{task.get_name()}: {'done' if task.done() else 'pending'}"]
    coro = task.get_coro()
    for frame in _awaited_frames(coro):
        code = frame.f_code
        lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_qualname}")
    waiter = getattr(task, "_fut_waiter", None)
    if waiter is not None:
        lines.append(f"  waiting on {waiter!r}")
        children = getattr(waiter, "_children", None)  # a gather: which tasks it still waits for
        if children:
            pending = [
                c.get_name() if isinstance(c, asyncio.Task) else repr(c) for c in children if not c.done()
            ]
            lines.append(f"    gathering, still pending: {', '.join(pending)}")
    elif not isinstance(coro, CoroutineType):
        lines.append(f"  (not a coroutine: {coro!r})")
    return "\n".join(lines)


def format_tasks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    tasks = sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())
    return f"{len(tasks)} asyncio task(s):\n" + "\n".join(format_task(t) for t in tasks)


def dump_tasks(what: str) -> None:
    text = f"{what}\n{format_tasks()}"
    log.error("%s", text)  # pytest shows it under "Captured log teardown" when the test then errors
    print(text, file=sys.stderr, flush=True)  # and on the terminal with -s


@contextlib.contextmanager
def dump_tasks_after(seconds: float, what: str) -> Iterator[None]:
    """Within the block, a dump of every task's awaits if the block is still running after `seconds`."""
    loop = asyncio.get_running_loop()
    handle = loop.call_later(seconds, dump_tasks, f"{what}: still running after {seconds:g} s")
    try:
        yield
    finally:
        handle.cancel()
