"""The embedded store survives `kill -9` at any point: no corruption, no lost acknowledged write.

A child process writes records in a loop and prints each id, flushed, as soon as the store call that
wrote it has returned; the test SIGKILLs it mid-way, several times on one data dir, and checks the file.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest
from videogen_server.domain.video import VideoStatus
from videogen_server.store import DB_FILENAME, open_store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

CHILD = textwrap.dedent(
    """
    import asyncio, sys, uuid
    from datetime import UTC, datetime
    from videogen_server.domain.generation import GenerationMode
    from videogen_server.domain.video import OutputInfo, VideoRecord, VideoStatus
    from videogen_server.store import open_store

    data_dir, tag = sys.argv[1], sys.argv[2]

    async def one(store, i):
        now = datetime.now(UTC)
        rec = VideoRecord(
            id=str(uuid.uuid4()), owner="owner-" + str(i % 3), mode=GenerationMode.TEXT_TO_VIDEO,
            model="gen4.5", prompt="p" * (i % 500), seconds=5, size="1280x720",
            status=VideoStatus.CREATING, create_time=now, update_time=now, request_id=f"{tag}-{i}",
        )
        stored, inserted = await store.claim(rec)
        assert inserted
        print("C", rec.id, flush=True)
        rec = await store.save(rec.replace(status=VideoStatus.IN_PROGRESS, upstream_id="u" + str(i)))
        print("S", rec.id, flush=True)
        if i % 2:
            done = rec.replace(status=VideoStatus.COMPLETED, outputs=(OutputInfo(0, "video/mp4", i),))
            await store.save(done)
            print("D", rec.id, flush=True)

    async def main():
        store = open_store(data_dir)
        await store.open()
        print("OPEN", flush=True)
        i = 0
        while True:  # until killed
            await asyncio.gather(*(one(store, i + k) for k in range(4)))
            i += 4

    asyncio.run(main())
    """
)


def run_and_kill(data_dir: Path, tag: str, after_lines: int, rng: random.Random) -> list[tuple[str, str]]:
    """Start the child, SIGKILL it once it has printed `after_lines` lines (0: at a random early moment)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        if after_lines == 0:
            time.sleep(rng.uniform(0.0, 0.3))  # maybe while importing, opening or migrating
        else:
            deadline = time.monotonic() + 5
            while len(lines) < after_lines and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
            assert len(lines) >= after_lines, f"child stopped early: {proc.stderr and proc.stderr.read()}"
            time.sleep(rng.uniform(0.0, 0.01))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        # The rest through the same buffered reader that readline used: communicate() would read the raw
        # pipe and skip what readline had already buffered, splitting a line in two (seen under load).
        out = proc.stdout.read()
        proc.stderr.close()
        proc.wait(timeout=5)
    assert proc.returncode == -signal.SIGKILL
    lines += out.splitlines(keepends=True)
    # A line cut by the kill has no newline: the call had returned, but be strict only about whole lines.
    events: list[tuple[str, str]] = []
    for line in lines:
        if line.endswith("\n") and line.strip() != "OPEN":
            kind, vid = line.split()
            events.append((kind, vid))
    return events


async def check_through_the_store(data_dir: Path, claimed: set[str], saved: set[str], done: set[str]) -> None:
    store = open_store(data_dir)
    await store.open()
    try:
        for vid in claimed:
            rec = await store.get(vid)
            assert rec is not None
            if vid in done:
                assert rec.status == VideoStatus.COMPLETED
                assert rec.outputs[0].content_type == "video/mp4"
            elif vid in saved:
                assert rec.status in (VideoStatus.IN_PROGRESS, VideoStatus.COMPLETED)
                assert rec.upstream_id
        unfinished = {r.id for r in await store.list_unfinished()}
        assert not (done & unfinished)
    finally:
        await store.close()


def test_sigkill_mid_write_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(1234)
    data_dir = tmp_path / "data"
    claimed: set[str] = set()
    saved: set[str] = set()
    done: set[str] = set()
    for round_no, after in enumerate([0, 7, 40, 150, 23, 300]):
        events = run_and_kill(data_dir, f"round{round_no}", after, rng)
        claimed |= {vid for kind, vid in events if kind == "C"}
        saved |= {vid for kind, vid in events if kind == "S"}
        done |= {vid for kind, vid in events if kind == "D"}
        if not (data_dir / DB_FILENAME).exists():
            continue  # killed before the file was created

        # A plain connection first: the file as the crash left it (plus the WAL replay).
        with closing(sqlite3.connect(data_dir / DB_FILENAME)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            # The schema is created in one transaction: all of it or none (killed while opening).
            ids = {row[0] for row in conn.execute("SELECT id FROM videos")} if "videos" in tables else set()
        assert claimed <= ids, f"round {round_no}: lost {len(claimed - ids)} acknowledged claims"

        asyncio.run(check_through_the_store(data_dir, claimed, saved, done))
    assert len(claimed) >= 150  # the kills did land mid-way through real work
