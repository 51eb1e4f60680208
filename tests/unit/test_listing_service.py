"""The List use case over a real store engine (memory): the page size clamp at 1000, next_page_token empty
exactly on the last page, a short page that is not the last when a filter's scan budget runs out, and the
token key read from the store once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from videogen_server.domain import listing
from videogen_server.domain.generation import GenerationMode
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.services.listing import TOKEN_SECRET_NAME, VideoListing
from videogen_server.store import MemoryVideoStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def video(i: int, status: VideoStatus = VideoStatus.QUEUED) -> VideoRecord:
    at = T0 + timedelta(seconds=i)
    return VideoRecord(
        id=str(uuid.uuid4()),
        owner="alice",
        mode=GenerationMode.TEXT_TO_VIDEO,
        model="gen4.5",
        prompt="p",
        seconds=5,
        size="1280x720",
        status=status,
        create_time=at,
        update_time=at,
    )


async def filled(records: list[VideoRecord]) -> MemoryVideoStore:
    store = MemoryVideoStore()
    await store.open()
    for r in records:
        await store.claim(r)
    return store


async def test_a_page_size_over_1000_is_1000_and_the_last_page_has_no_token() -> None:
    records = [video(i) for i in range(1003)]
    listing_ = VideoListing(await filled(records))
    page, token = await listing_.list("alice", page_size=5000, page_token="", filter_text="")
    assert len(page) == 1000 and token
    rest, last = await listing_.list("alice", page_size=5000, page_token=token, filter_text="")
    assert [r.id for r in page + rest] == [r.id for r in records[::-1]] and last == ""
    # Exactly a full last page: still no token (the extra match fetched says there is nothing after).
    three, none = await listing_.list("alice", page_size=3, page_token=token, filter_text="")
    assert len(three) == 3 and none == ""


async def test_a_filter_matching_little_returns_short_pages_that_resume(monkeypatch: Any) -> None:
    records = [video(i, VideoStatus.FAILED if i in (3, 25) else VideoStatus.QUEUED) for i in range(30)]
    store = await filled(records)
    calls: list[int] = []
    original = store.list_page

    async def small_budget(*args: Any, **kw: Any) -> listing.ListPage:
        kw["scan_limit"] = 10
        calls.append(kw["limit"])
        return await original(*args, **kw)

    monkeypatch.setattr(store, "list_page", small_budget)
    listing_ = VideoListing(store)
    pages: list[list[str]] = []
    token = ""
    while True:
        page, token = await listing_.list(
            "alice", page_size=5, page_token=token, filter_text="status = FAILED"
        )
        pages.append([r.id for r in page])
        if not token:
            break
    # 30 entries, 10 examined per page: newest first 29..20 (25 fails), 19..10, 9..0 (3 fails).
    assert pages == [[records[25].id], [], [records[3].id]]
    assert calls == [6, 6, 6]  # page_size + 1: the extra match only says whether a page follows


async def test_the_token_key_is_the_stores_secret_read_once() -> None:
    store = await filled([video(i) for i in range(3)])
    reads: list[str] = []
    original = store.secret

    async def counted(name: str) -> bytes:
        reads.append(name)
        return await original(name)

    store.secret = counted  # type: ignore[method-assign]
    listing_ = VideoListing(store)
    _, token = await listing_.list("alice", page_size=1, page_token="", filter_text="")
    _, token = await listing_.list("alice", page_size=1, page_token=token, filter_text="")
    # Another process on the same store (same secret) accepts the token.
    other = VideoListing(store)
    page, _ = await other.list("alice", page_size=1, page_token=token, filter_text="")
    assert len(page) == 1
    assert reads == [TOKEN_SECRET_NAME, TOKEN_SECRET_NAME]
