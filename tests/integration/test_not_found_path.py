"""Another caller's video and an unknown id are one and the same NOT_FOUND (issue 8, item 9c): not only the
same status and message, but the same work in the store, so that the answer's timing cannot tell them apart.
Before the fix another caller's *finished* video was answered from the store's in-memory cache of terminal
records (no database query) while an unknown id went to the database: measurably faster.

No timing threshold here: the store's SQLite connection traces every statement it runs, and both lookups
must run the same statements (none served from memory)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import RunningServer, start_server, stop_server
from rpc_helpers import wait_terminal
from videogen.v1 import video_pb2
from videogen.v1 import video_service_pb2 as pb
from videogen_server.store import SqliteVideoStore

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef00"
# The statement of `list_unfinished`, run by the tracker's recovery scan (store/sqlite.py).
_RECOVERY_SCAN = "SELECT rowid, data FROM videos WHERE status NOT IN "
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    # The archive off: its copy's saves would interleave with the statements this test traces.
    server = await start_server(str(tmp_path / "data"), api_keys={"alice": ALICE, "bob": BOB}, archive="off")
    try:
        yield server
    finally:
        await stop_server(server)


class Traced:
    """Every SQL statement the server's store runs (its one connection, on its worker thread)."""

    def __init__(self) -> None:
        self.statements: list[str] = []

    async def install(self, store: SqliteVideoStore) -> None:
        def trace() -> None:
            store._db().set_trace_callback(lambda sql: self.statements.append(sql))

        await store._run(trace)

    def take(self) -> list[str]:
        """The statements since the last call, with ids and owners blanked out (the values differ), without
        the background work that shares the connection: the tracker's recovery scan (every two poll
        intervals) reads every unfinished record whoever calls, so it belongs to no caller's lookup."""
        taken, self.statements = self.statements, []
        return [
            _UUID.sub("<id>", s).replace("'alice'", "'<owner>'").replace("'bob'", "'<owner>'")
            for s in taken
            if not s.startswith(_RECOVERY_SCAN)
        ]


def calls(stub: Any, video_id: str) -> dict[str, Callable[[tuple[tuple[str, str], ...]], Any]]:
    async def watch(md: tuple[tuple[str, str], ...]) -> None:
        async for _ in stub.WatchStatus(pb.WatchStatusRequest(id=video_id), metadata=md, timeout=10):
            pass

    async def stream(md: tuple[tuple[str, str], ...]) -> None:
        async for _ in stub.StreamContent(pb.StreamContentRequest(id=video_id), metadata=md, timeout=10):
            pass

    return {
        "Get": lambda md: stub.Get(pb.GetRequest(id=video_id), metadata=md, timeout=10),
        "Cancel": lambda md: stub.Cancel(pb.CancelRequest(id=video_id), metadata=md, timeout=10),
        "WatchStatus": watch,
        "StreamContent": stream,
    }


async def not_found(
    call: Callable[[tuple[tuple[str, str], ...]], Any], md: tuple[tuple[str, str], ...]
) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(md)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    return _UUID.sub("<id>", caught.value.details() or "")


@pytest.mark.parametrize("rpc", ["Get", "Cancel", "WatchStatus", "StreamContent"])
async def test_another_callers_finished_video_and_an_unknown_id_take_the_same_store_path(
    server: RunningServer, rpc: str
) -> None:
    stub, alice, bob = server.stub, server.metadata(ALICE), server.metadata(BOB)
    video = (
        await stub.Generate(pb.GenerateRequest(model="gen4.5", prompt="mine", seconds=5), metadata=alice)
    ).video
    done = await wait_terminal(stub, video.id, metadata=alice)
    assert done.status == video_pb2.VIDEO_STATUS_COMPLETED
    await stub.Get(pb.GetRequest(id=video.id), metadata=alice)  # alice's own reads stay fast (cached)

    assert isinstance(server.app.store, SqliteVideoStore)
    traced = Traced()
    await traced.install(server.app.store)
    traced.take()

    theirs = await not_found(calls(stub, video.id)[rpc], bob)
    theirs_sql = traced.take()
    unknown = await not_found(calls(stub, str(uuid.uuid4()))[rpc], bob)
    unknown_sql = traced.take()

    assert theirs == unknown  # the same answer ...
    assert unknown_sql, "an unknown id is looked up in the database"
    assert theirs_sql == unknown_sql  # ... through the same store work: no answer from memory
