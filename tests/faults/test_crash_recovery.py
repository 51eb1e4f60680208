"""Nothing lost: the server runs as a child process and is SIGKILLed mid-flow, then started again on the
same data directory. Every video acknowledged before the kill is still found, idempotency keys still hold, a
create killed mid-POST is closed as outcome-unknown (not sent again), and the store passes SQLite's integrity
check."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import signal
import sqlite3
from contextlib import closing
from pathlib import Path

import grpc
import pytest
from conftest import FAST_SIMULATOR
from faults.helpers import posts
from faults.server_process import start_process
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.domain.video import OUTCOME_UNKNOWN_CODE, VideoStatus
from videogen_server.simulator import RunwaySimulator
from videogen_server.simulator.faults import Fault
from videogen_server.store import DB_FILENAME, open_store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def request(request_id: str = "", prompt: str = "a boat") -> pb.GenerateRequest:
    return pb.GenerateRequest(model="gen4.5", prompt=prompt, seconds=5, request_id=request_id)


def assert_store_intact(data_dir: Path) -> None:
    with closing(sqlite3.connect(data_dir / DB_FILENAME)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def wait_for(condition, limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - polls another process's state
            await asyncio.sleep(0.01)


@pytest.fixture
async def simulator():
    sim = RunwaySimulator(api_key="key_crash_test", config=dataclasses.replace(FAST_SIMULATOR))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def test_kill_mid_create_is_reconciled_not_duplicated(tmp_path: Path, simulator):
    data_dir = tmp_path / "data"
    server = await start_process(data_dir, simulator)
    try:
        keyed = (await server.stub.Generate(request("key-a"))).video
        plain = (await server.stub.Generate(request())).video
        simulator.faults.add(Fault(route="create", kind="slow", delay=5.0))
        in_flight = asyncio.ensure_future(server.stub.Generate(request("key-mid", "mid")))
        await wait_for(lambda: posts(simulator) == 3)  # the POST has reached Runway
        server.kill()  # between the POST and its answer
        with pytest.raises(grpc.aio.AioRpcError):
            await in_flight
    finally:
        await server.close()
    assert_store_intact(data_dir)

    server = await start_process(data_dir, simulator)
    try:
        stub = server.stub
        assert (await stub.Generate(request("key-a"))).video.id == keyed.id
        assert (await stub.Get(pb.GetRequest(id=plain.id))).video.prompt == "a boat"
        mid = (await stub.Generate(request("key-mid", "mid"))).video
        assert mid.status == video_pb2.VIDEO_STATUS_FAILED and mid.error.code == OUTCOME_UNKNOWN_CODE
        assert (await stub.Get(pb.GetRequest(id=mid.id))).video.status == video_pb2.VIDEO_STATUS_FAILED
        assert posts(simulator) == 3  # nothing was sent again
        # The same key with another request is still refused.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Generate(request("key-a", "something else"))
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    finally:
        await server.close()
    assert_store_intact(data_dir)


@pytest.mark.faults
async def test_repeated_kills_lose_nothing_and_never_pay_twice(tmp_path: Path, simulator):
    rng = random.Random(4)
    data_dir = tmp_path / "data"
    acked: dict[str, str] = {}  # request_id -> video id, answered before a kill
    plain: set[str] = set()  # videos created without a request_id
    keyed: set[str] = set()  # every request_id ever sent

    async def client(stub, round_no: int, worker: int) -> None:
        for i in range(1000):  # bounded; the kill ends it long before
            rid = f"r{round_no}-w{worker}-{i}"
            try:
                if i % 4 == 3:
                    plain.add((await stub.Generate(request(prompt=rid))).video.id)
                else:
                    keyed.add(rid)
                    acked[rid] = (await stub.Generate(request(rid, rid))).video.id
                    await stub.Get(pb.GetRequest(id=acked[rid]))
            except grpc.aio.AioRpcError:
                return  # the server died under us

    for round_no in range(6):
        server = await start_process(data_dir, simulator)
        try:
            if round_no % 2:
                # Some creates hang at Runway, so the kill lands between a POST and its answer.
                simulator.faults.add(Fault(route="create", kind="slow", delay=3.0, count=3))
            workers = [asyncio.ensure_future(client(server.stub, round_no, w)) for w in range(4)]
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            server.kill()
            await asyncio.gather(*workers)
        finally:
            await server.close()
            simulator.faults.clear()
        assert_store_intact(data_dir)

    assert len(acked) > 20 and plain
    # Keys claimed but never answered (killed before or during the POST), read from the store as left.
    store = open_store(data_dir)
    await store.open()
    try:
        creating = {
            r.request_id: r.id
            for r in await store.list_unfinished()
            if r.status is VideoStatus.CREATING and r.request_id
        }
    finally:
        await store.close()
    assert creating  # some kills did land mid-create

    server = await start_process(data_dir, simulator)
    try:
        stub = server.stub
        for rid, vid in acked.items():
            assert (await stub.Generate(request(rid, rid))).video.id == vid
        for vid in plain:
            assert (await stub.Get(pb.GetRequest(id=vid))).video.id == vid
        before = posts(simulator)
        for rid, vid in creating.items():
            video = (await stub.Generate(request(rid, rid))).video
            assert video.id == vid and video.error.code == OUTCOME_UNKNOWN_CODE
        assert posts(simulator) == before  # reconciled, not sent again
        # Keys never recorded (killed before the claim) may be sent now, once; after that they hold.
        unacked = sorted(keyed - acked.keys() - creating.keys())
        first = {rid: (await stub.Generate(request(rid, rid))).video.id for rid in unacked}
        assert posts(simulator) - before <= len(unacked)
        sent = posts(simulator)
        for rid in [*acked, *creating, *unacked]:
            video = (await stub.Generate(request(rid, rid))).video
            assert video.id == acked.get(rid) or video.id == creating.get(rid) or video.id == first[rid]
        assert posts(simulator) == sent
    finally:
        await server.close()
    assert_store_intact(data_dir)
