"""`videogen list` through the real command (.venv/bin/videogen, a process) and the library's list_videos /
iter_videos (sync and asyncio), against the real server: newest first, pages with a token, --all, --filter,
--json, and a refused filter as an RPC error (exit 3) naming what is supported."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from conftest import RunningServer
from videogen_client import AsyncVideoClient, InvalidArgument, VideoClient

VIDEOGEN = Path(sys.executable).parent / "videogen"


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(VIDEOGEN), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(), err.decode()


async def make_videos(server: RunningServer, n: int) -> list[str]:
    """`n` videos, one after the other; their ids newest first."""
    async with AsyncVideoClient(server.address) as client:
        ids = [
            (await client.generate("gen4.5", f"clip number {i}", seconds=5, timeout=10)).id for i in range(n)
        ]
    return ids[::-1]


async def test_list_videos_and_iter_videos_sync_and_async(videogen_server: RunningServer) -> None:
    newest = await make_videos(videogen_server, 7)
    async with AsyncVideoClient(videogen_server.address) as client:
        first = await client.list_videos(page_size=3, timeout=10)
        assert [v.id for v in first.videos] == newest[:3] and first.next_page_token
        second = await client.list_videos(page_size=3, page_token=first.next_page_token, timeout=10)
        assert [v.id for v in second.videos] == newest[3:6]
        assert [v.id async for v in client.iter_videos(page_size=2, timeout=10)] == newest
        assert [v.id async for v in client.iter_videos(filter='model = "veo3.1"', timeout=10)] == []
        try:
            await client.list_videos(filter="status = NOPE", timeout=10)
            raise AssertionError("expected InvalidArgument")
        except InvalidArgument as err:
            assert [field for field, _ in err.field_violations] == ["filter"]

    def sync() -> tuple[list[str], list[str], str]:
        with VideoClient(videogen_server.address) as client:
            page = client.list_videos(page_size=4, timeout=10)
            every = [v.id for v in client.iter_videos(page_size=3, timeout=10)]
            return [v.id for v in page.videos], every, page.next_page_token

    page, every, token = await asyncio.to_thread(sync)
    assert page == newest[:4] and every == newest and token


async def test_list_prints_a_table_and_the_next_page(videogen_server: RunningServer) -> None:
    newest = await make_videos(videogen_server, 5)
    target = ("--target", videogen_server.address)
    code, out, err = await run_cli(*target, "list", "--page-size", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "MODEL", "CREATED", "PROMPT"]
    assert [line.split()[0] for line in lines[1:]] == newest[:2]
    assert "gen4.5" in lines[1] and "clip number 4" in lines[1]
    assert "more videos: add --page-token " in err
    token = err.split("--page-token ", 1)[1].split()[0]
    code, out, err = await run_cli(*target, "list", "--page-size", "2", "--page-token", token)
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:]] == newest[2:4]

    code, out, err = await run_cli(*target, "list", "--all", "--page-size", "2")
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:]] == newest and "more videos" not in err


async def test_list_json_and_filters(videogen_server: RunningServer) -> None:
    newest = await make_videos(videogen_server, 3)
    target = ("--target", videogen_server.address)
    code, out, err = await run_cli(*target, "--json", "list", "--page-size", "2")
    assert code == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["id"] for o in objects[:2]] == newest[:2]
    assert set(objects[2]) == {"next_page_token"} and objects[2]["next_page_token"]
    code, out, err = await run_cli(*target, "--json", "list", "--all", "--filter", 'model = "gen4.5"')
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == newest
    code, out, err = await run_cli(*target, "list", "--filter", 'model = "veo3.1"')
    assert code == 0 and out.splitlines()[1:] == [] and "no videos match the filter" in err
    code, out, err = await run_cli(*target, "list", "--filter", "status = COMPLETED OR model = x")
    assert code == 3
    assert "INVALID_ARGUMENT" in err and 'model = "gen4.5"' in err
