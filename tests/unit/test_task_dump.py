"""The teardown diagnostic (tests/task_dump.py): a block still running after its time names every task's
chain of awaits, down to the future it waits on; a block that ends in time says nothing."""

from __future__ import annotations

import asyncio
import logging

from task_dump import dump_tasks_after


class _Seen(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.event.set()


async def test_a_block_still_running_is_dumped_down_to_the_awaited_future() -> None:
    seen = _Seen()
    logging.getLogger("tests.task_dump").addHandler(seen)
    stuck = asyncio.Event()

    async def innermost_wait() -> None:
        await stuck.wait()

    async def stopping() -> None:
        with dump_tasks_after(0.01, "stopping the test's server"):
            await innermost_wait()

    task = asyncio.create_task(stopping(), name="the-stop")
    try:
        await seen.event.wait()  # the dump comes while the block still waits
    finally:
        stuck.set()
        await task
        logging.getLogger("tests.task_dump").removeHandler(seen)
    (text,) = seen.messages
    assert text.startswith("stopping the test's server: still running after 0.01 s"), text
    block = text.split("the-stop: pending\n", 1)[1]
    assert "in test_a_block_still_running_is_dumped_down_to_the_awaited_future.<locals>.stopping" in block
    assert ".<locals>.innermost_wait" in block and "in Event.wait" in block, block
    assert "waiting on <Future pending" in block, block


async def test_a_block_that_ends_in_time_dumps_nothing() -> None:
    seen = _Seen()
    logging.getLogger("tests.task_dump").addHandler(seen)
    try:
        with dump_tasks_after(0.01, "a quick stop"):
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # past the time: the timer was cancelled with the block
    finally:
        logging.getLogger("tests.task_dump").removeHandler(seen)
    assert seen.messages == []


async def test_a_gather_names_the_tasks_it_still_waits_for() -> None:
    seen = _Seen()
    logging.getLogger("tests.task_dump").addHandler(seen)
    stuck = asyncio.Event()
    child = asyncio.create_task(stuck.wait(), name="the-child-that-never-ends")

    async def stopping() -> None:
        with dump_tasks_after(0.01, "stopping"):
            await asyncio.gather(child)

    task = asyncio.create_task(stopping(), name="the-stop")
    try:
        await seen.event.wait()
    finally:
        stuck.set()
        await task
        logging.getLogger("tests.task_dump").removeHandler(seen)
    block = seen.messages[0].split("the-stop: pending\n", 1)[1]
    assert "gathering, still pending: the-child-that-never-ends" in block, block
