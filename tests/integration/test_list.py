"""List through the real server (issue 12 acceptance): a real App on loopback with the Runway simulator as a
real HTTP server, two callers configured by key.

25 videos, page_size 10 -> pages of 10, 10 and 5, newest first, with no repeats and none skipped while 5
more are created between page 1 and page 2; the other caller lists none of them and cannot use the first
caller's token; a tampered token, or one from another filter, is INVALID_ARGUMENT; filters by status and
model (also paged); page_size 0, clamped and negative; and List costs Runway nothing (the simulator's request
counters do not move)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from conftest import FAST_SIMULATOR, RunningServer, start_server, stop_server
from redis_server import RedisServer
from rpc_helpers import expect_error, wait_terminal
from videogen.v1 import video_pb2, video_service_pb2
from videogen_server.simulator import SimulatorConfig

ALICE, BOB = "alice-key-" + "a" * 20, "bob-key-" + "b" * 22
SIM = SimulatorConfig(
    pending_seconds=FAST_SIMULATOR.pending_seconds,
    running_seconds=FAST_SIMULATOR.running_seconds,
    output_size=64 * 1024,
    max_concurrency=None,  # 30 tasks at once: none throttled
)


@pytest.fixture
async def server(tmp_path: Path) -> Any:
    # The archive off: its copies of finished outputs read tasks from Runway in the background, which would
    # move the simulator's counters that show List itself makes no upstream call.
    running = await start_server(
        str(tmp_path / "data"), sim_config=SIM, api_keys={"alice": ALICE, "bob": BOB}, archive="off"
    )
    try:
        yield running
    finally:
        await stop_server(running)


class Caller:
    def __init__(self, server: RunningServer, key: str) -> None:
        self.server = server
        self.metadata = server.metadata(key)

    async def generate(self, model: str = "gen4.5", prompt: str = "a boat at dawn") -> str:
        seconds = 8 if model == "veo3.1" else 5
        response = await self.server.stub.Generate(
            video_service_pb2.GenerateRequest(model=model, prompt=prompt, seconds=seconds),
            metadata=self.metadata,
        )
        return response.video.id

    async def list(
        self, page_size: int = 0, page_token: str = "", filter: str = ""
    ) -> video_service_pb2.ListResponse:
        return await self.server.stub.List(
            video_service_pb2.ListRequest(page_size=page_size, page_token=page_token, filter=filter),
            metadata=self.metadata,
        )

    async def list_all(self, page_size: int, filter: str = "") -> list[list[str]]:
        pages: list[list[str]] = []
        token = ""
        while True:
            page = await self.list(page_size, token, filter)
            pages.append([v.id for v in page.videos])
            token = page.next_page_token
            if not token:
                return pages

    async def wait_all(self, ids: list[str]) -> dict[str, video_pb2.Video]:
        done = await asyncio.gather(
            *(wait_terminal(self.server.stub, i, metadata=self.metadata) for i in ids)
        )
        return {v.id: v for v in done}


async def upstream_requests(server: RunningServer) -> dict[str, int]:
    """The simulator's counters of the task API (/v1/...): what a call to Runway would move."""
    async with httpx.AsyncClient() as http:
        stats = (await http.get(f"{server.simulator.base_url}/_sim/stats")).json()
    return {route: n for route, n in stats["requests"].items() if " /v1/" in route}


def flip(token: str, at: int) -> str:
    ch = token[at]
    return token[:at] + ("B" if ch == "A" else "A") + token[at + 1 :]


async def test_list_pages_filters_and_tokens_for_two_callers(server: RunningServer) -> None:
    alice, bob = Caller(server, ALICE), Caller(server, BOB)
    # 25 videos, one after the other (so their create_times are in this order): 17 that complete,
    # 3 that fail, 5 of another model.
    kinds = ["ok"] * 17 + ["fail"] * 3 + ["veo"] * 5
    kinds = [kinds[(i * 7) % 25] for i in range(25)]  # interleaved
    created: list[str] = []
    for kind in kinds:
        if kind == "veo":
            created.append(await alice.generate("veo3.1"))
        elif kind == "fail":
            created.append(await alice.generate(prompt="a boat [sim:fail=INTERNAL.BAD_OUTPUT.CODE01]"))
        else:
            created.append(await alice.generate())
    newest_first = created[::-1]

    page1 = await alice.list(page_size=10)
    assert [v.id for v in page1.videos] == newest_first[:10] and page1.next_page_token
    assert all(v.status != video_pb2.VIDEO_STATUS_UNSPECIFIED for v in page1.videos)
    later = [await alice.generate() for _ in range(5)]  # created between page 1 and page 2
    page2 = await alice.list(page_size=10, page_token=page1.next_page_token)
    page3 = await alice.list(page_size=10, page_token=page2.next_page_token)
    assert [len(p.videos) for p in (page1, page2, page3)] == [10, 10, 5]
    assert page2.next_page_token and page3.next_page_token == ""
    listed = [v.id for p in (page1, page2, page3) for v in p.videos]
    assert listed == newest_first and len(set(listed)) == 25  # no repeats, none skipped, none of `later`
    # From the first page again, the 5 newer come first.
    assert [v.id for v in (await alice.list(page_size=5)).videos] == later[::-1]

    # The other caller sees none of them, and cannot page with the first caller's token.
    empty = await bob.list()
    assert list(empty.videos) == [] and empty.next_page_token == ""
    err = await expect_error(bob.list(page_size=10, page_token=page1.next_page_token))
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.violations
    bobs = await bob.generate()
    assert [v.id for v in (await bob.list()).videos] == [bobs]

    # A tampered token (any character), a token from another filter: INVALID_ARGUMENT on page_token.
    token = page1.next_page_token
    for at in (0, len(token) // 2, len(token) - 1):
        err = await expect_error(alice.list(page_size=10, page_token=flip(token, at)))
        assert err.code is grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.violations
    err = await expect_error(alice.list(page_size=10, page_token=token, filter="status = COMPLETED"))
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.violations

    # Filters, once every video has finished (its status is the one recorded).
    states = await alice.wait_all(created + later)
    await bob.wait_all([bobs])  # nothing left polling Runway: the counters below move only for List
    everything = later[::-1] + newest_first
    failed = [i for i in everything if states[i].status == video_pb2.VIDEO_STATUS_FAILED]
    veo = [i for i in everything if states[i].model == "veo3.1"]
    gen_done = [
        i
        for i in everything
        if states[i].model == "gen4.5" and states[i].status == video_pb2.VIDEO_STATUS_COMPLETED
    ]
    assert (len(failed), len(veo), len(gen_done)) == (3, 5, 22)
    before = await upstream_requests(server)
    assert await alice.list_all(50, "status = FAILED") == [failed]
    assert await alice.list_all(50, 'model = "veo3.1"') == [veo]
    assert await alice.list_all(50, "status = VIDEO_STATUS_QUEUED") == [[]]
    pages = await alice.list_all(7, 'status = COMPLETED AND model = "gen4.5"')
    assert [len(p) for p in pages] == [7, 7, 7, 1] and [i for p in pages for i in p] == gen_done
    # A filtered page's token is refused without that filter; equivalent spellings share tokens.
    filtered = await alice.list(page_size=2, filter="status = COMPLETED")
    assert filtered.next_page_token
    err = await expect_error(alice.list(page_size=2, page_token=filtered.next_page_token))
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT and "page_token" in err.violations
    first = await alice.list(7, filter='model="gen4.5" AND status=VIDEO_STATUS_COMPLETED')
    second = await alice.list(7, first.next_page_token, 'status = COMPLETED AND model = "gen4.5"')
    assert [v.id for v in second.videos] == gen_done[7:14]
    # The video as Get shows it, from the record.
    [shown] = (await alice.list(1, filter="status = FAILED")).videos
    assert shown == states[failed[0]]

    # page_size: 0 is 50, more than 1000 is 1000 (here: all 30), negative is refused.
    for size in (0, 1001, 2**31 - 1):
        page = await alice.list(page_size=size)
        assert [v.id for v in page.videos] == everything and page.next_page_token == ""
    err = await expect_error(alice.list(page_size=-1))
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT and "page_size" in err.violations
    err = await expect_error(alice.list(filter="status = COMPLETED OR status = FAILED"))
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT
    assert 'model = "gen4.5"' in err.violations["filter"]
    # None of it reached Runway.
    assert await upstream_requests(server) == before


async def test_list_needs_a_caller_key(server: RunningServer) -> None:
    err = await expect_error(server.stub.List(video_service_pb2.ListRequest()))
    assert err.code is grpc.StatusCode.UNAUTHENTICATED


async def test_a_page_token_from_one_replica_works_on_another_sharing_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Two servers on one redis-server (replicas): the List index is Redis's, and the token key is the
    store's secret, so a page started on one replica continues on the other, and after a restart."""
    keys = {"alice": ALICE, "bob": BOB}
    first = await start_server(str(tmp_path / "a"), sim_config=SIM, api_keys=keys, store=redis_server.url)
    try:
        alice = Caller(first, ALICE)
        created = [await alice.generate(prompt=f"kite {i}") for i in range(5)]
        await alice.wait_all(created)  # finished: the second replica has nothing to poll
        page1 = await alice.list(page_size=3)
        assert [v.id for v in page1.videos] == created[::-1][:3]
        second = await start_server(
            str(tmp_path / "b"), sim_config=SIM, api_keys=keys, store=redis_server.url
        )
        try:
            page2 = await Caller(second, ALICE).list(page_size=3, page_token=page1.next_page_token)
            assert [v.id for v in page2.videos] == created[::-1][3:] and page2.next_page_token == ""
            assert list((await Caller(second, BOB).list()).videos) == []
            done = await Caller(second, ALICE).list(filter='status = COMPLETED AND model = "gen4.5"')
            assert [v.id for v in done.videos] == created[::-1]
        finally:
            await stop_server(second)
    finally:
        await stop_server(first)
