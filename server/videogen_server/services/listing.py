"""The List use case (issue 12): a caller's own videos, newest first, a page at a time, from the store only
(no call to the provider). No gRPC here.

A page is one `VideoStore.list_page` call for `page_size + 1` matches: the extra one only says whether
another page exists, so `next_page_token` is empty exactly on the last page. The token resumes strictly
after the page's last video (or, when the store's scan budget ran out first, after the last entry it
examined), signed for this caller and this filter (domain/page_token.py).
"""

from __future__ import annotations

import asyncio

from videogen_server.domain.listing import (
    ListCursor,
    canonical_filter,
    cursor_of,
    page_size_of,
    parse_filter,
)
from videogen_server.domain.page_token import decode_token, encode_token
from videogen_server.domain.video import VideoRecord
from videogen_server.services.ports import VideoStore

# The store's secret that signs page tokens: one per data set, shared by every replica.
TOKEN_SECRET_NAME = "list-page-token"


class VideoListing:
    def __init__(self, store: VideoStore) -> None:
        self._store = store
        self._key: bytes | None = None
        self._key_lock = asyncio.Lock()

    async def list(
        self, caller: str, *, page_size: int, page_token: str, filter_text: str
    ) -> tuple[list[VideoRecord], str]:
        """(the page's videos, next_page_token or ""). Every argument is checked before the store is read
        for records: INVALID_ARGUMENT on `page_size`, `filter` or `page_token`."""
        size = page_size_of(page_size)
        query = parse_filter(filter_text)
        bound = canonical_filter(query)
        key = await self._token_key()
        after = decode_token(key, caller, bound, page_token) if page_token else None
        page = await self._store.list_page(caller, query, after=after, limit=size + 1)
        records = page.records
        resume: ListCursor | None
        if len(records) > size:
            records = records[:size]
            resume = cursor_of(records[-1])
        else:
            resume = page.scanned_to
        return records, "" if resume is None else encode_token(key, caller, bound, resume)

    async def _token_key(self) -> bytes:
        """The signing key, read from the store once per process (it never changes)."""
        if self._key is None:
            async with self._key_lock:
                if self._key is None:
                    self._key = await self._store.secret(TOKEN_SECRET_NAME)
        return self._key
