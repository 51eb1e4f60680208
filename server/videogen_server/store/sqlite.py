"""The embedded job record store: one SQLite file, stdlib only.

Threading: all SQLite work runs on ONE dedicated worker thread (`_Worker`: a thread that owns the one
connection and takes calls from a queue), awaited as an asyncio future: the event loop never blocks on disk.
(A ThreadPoolExecutor with ``run_in_executor`` does the same with two futures and a lock per call; the lean
hand-off halves the hop, which a Generate pays twice.) The worker runs
the calls one at a time in submission order, which makes every method atomic with respect to the other
calls of this process; each write is also one transaction: a single statement run on its own (SQLite's
autocommit: the common `claim` is one INSERT, the common `save` one guarded UPDATE), or ``BEGIN IMMEDIATE``
... ``COMMIT`` around a read-check-write (and `claim` relies on a UNIQUE index, not on a read-then-write),
so several processes sharing the file stay correct too.

Durability: WAL journal and ``synchronous=NORMAL``; every method commits before it returns. A killed
process (``kill -9`` at any point) loses nothing that was committed and never leaves a corrupt file. With
NORMAL, a power loss or OS crash may lose the last few commits (never corrupts the database); use
``synchronous=FULL`` if that matters more than write latency.

The archive's indexes (issue 11; schema 3): two columns beside the record, written by every INSERT and
UPDATE with it, so in the same transaction: `unarchived_since` (the complete_time of a COMPLETED record with
an output still PENDING, else NULL) and `archived_until` (the expire_time of a record with an ARCHIVED
output, else NULL), each with a partial index over its non-NULL rows (store/archive_index.py decides both).
`list_unarchived` and `list_expired` read those indexes in order, never the table.

List's index (issue 12; schema 4): two more columns written once, by the INSERT (`create_time` as
fixed-width UTC text, and `model`), and the index ``videos_owner_created (owner, create_time DESC, id
DESC)``: a page is a walk of one owner's entries in that index from the cursor, reading `status` and `model`
of each and decoding only the matches, at most a scan budget of entries (domain/listing.py). No save touches
the index (its columns never change), so it costs Generate one index insert and nothing after. The `meta`
table keeps named secrets (`secret`: List's token key), made once per file.

Uploads' keys (issue 12; schema 5): the table ``uploads (uri, key, expire_time)``, one row per runway:// URI
uploaded through us and the key that uploaded it; `save_upload` deletes the expired rows (by the index on
expire_time) and upserts in one transaction, and `upload_key` ignores a row past its expire_time.

Cache: terminal records are kept in a bounded in-memory map so that `get` of a finished video costs no
thread hop. An owner-scoped `get` uses an entry only for its owner: another owner's video takes the same
query as an unknown id, so NOT_FOUND costs the same for both. The map is written only on the worker
thread, in the same order as the database, and read lock-free from the loop (single dict operations are
atomic). Another process sharing the file can only change output metadata of a terminal record (a
terminal state is final), so a stale entry there can only lack metadata it filled in.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import secrets
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, TypeVar

from videogen_server import errors
from videogen_server.domain.clock import format_time, parse_time, utcnow
from videogen_server.domain.listing import SCAN_BUDGET, ListCursor, ListPage, ListQuery, statuses_of
from videogen_server.domain.video import VideoRecord, VideoStatus
from videogen_server.store.archive_index import expiring_at, index_text, unarchived_since
from videogen_server.store.codec import decode_record, encode_record

__all__ = ["DB_FILENAME", "SCHEMA_VERSION", "SqliteVideoStore"]

T = TypeVar("T")

DB_FILENAME: Final = "videogen.sqlite3"
SCHEMA_VERSION: Final = 5
_BUSY_TIMEOUT_S: Final = 10.0  # another process holding the write lock: wait this long, then fail
_CACHE_MAX: Final = 10_000

# The domain's terminal states as an SQL list in declaration order, "('COMPLETED', 'FAILED', 'CANCELLED')";
# not in the order of the TERMINAL_STATUSES frozenset, which varies with the hash seed: the text must not.
# The text is also part of the partial indexes of migrations 1 and 2, which SQLite uses only for a query
# with the same list: a change to the terminal set needs a migration that recreates `videos_unfinished`
# and `videos_owner_unfinished`.
_TERMINAL_SQL: Final = "(" + ", ".join(f"'{s.value}'" for s in VideoStatus if s.terminal) + ")"


def _index_columns(record: VideoRecord) -> tuple[str | None, str | None]:
    """The archive index columns of `record`: (unarchived_since, archived_until), NULL when not indexed."""
    since, until = unarchived_since(record), expiring_at(record)
    return (
        None if since is None else index_text(since),
        None if until is None else index_text(until),
    )


def _add_archive_columns(conn: sqlite3.Connection) -> None:
    """Migration 3: the archive index columns. SQLite has no ADD COLUMN IF NOT EXISTS: like the other
    statements (IF NOT EXISTS), a step run again on a file that has them changes nothing."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(videos)")}
    for column in ("unarchived_since", "archived_until"):
        if column not in have:
            conn.execute(f"ALTER TABLE videos ADD COLUMN {column} TEXT")


def _fill_archive_columns(conn: sqlite3.Connection) -> None:
    """Migration 3: the archive index columns of the rows already there. Only COMPLETED rows can be indexed;
    their outputs, written before the archive existed, decode as PENDING, so each is listed as unarchived
    (the archiver then copies it, or records it LOST when Runway no longer serves it)."""
    rows = conn.execute("SELECT rowid, data FROM videos WHERE status = 'COMPLETED'").fetchall()
    for rowid, data in rows:
        since, until = _index_columns(decode_record(data))
        conn.execute(
            "UPDATE videos SET unarchived_since = ?, archived_until = ? WHERE rowid = ?",
            (since, until, rowid),
        )


def _add_list_columns(conn: sqlite3.Connection) -> None:
    """Migration 4: List's columns (create_time, model), and their values for the rows already there (both
    are in each row's data, and never change)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(videos)")}
    for column in ("create_time", "model"):
        if column not in have:
            conn.execute(f"ALTER TABLE videos ADD COLUMN {column} TEXT")
    rows = conn.execute("SELECT rowid, data FROM videos WHERE create_time IS NULL").fetchall()
    for rowid, data in rows:
        record = decode_record(data)
        conn.execute(
            "UPDATE videos SET create_time = ?, model = ? WHERE rowid = ?",
            (index_text(record.create_time), record.model, rowid),
        )


# Each entry migrates from user_version == index to index + 1: SQL statements, or a function run on the
# connection, inside the one migration transaction.
_MIGRATIONS: Final[tuple[tuple[str | Callable[[sqlite3.Connection], None], ...], ...]] = (
    (
        """
        CREATE TABLE IF NOT EXISTS videos (
            id         TEXT PRIMARY KEY NOT NULL,
            owner      TEXT NOT NULL,
            request_id TEXT NOT NULL,
            status     TEXT NOT NULL,
            updated_at TEXT NOT NULL,  -- ISO-8601 UTC, = data.update_time
            data       TEXT NOT NULL   -- the full record as JSON (store/codec.py)
        )
        """,
        # The idempotency key: one video per (owner, request_id); an empty request_id is no key.
        """
        CREATE UNIQUE INDEX IF NOT EXISTS videos_request_key
            ON videos (owner, request_id) WHERE request_id != ''
        """,
        # list_unfinished() reads only this small part of the table.
        f"CREATE INDEX IF NOT EXISTS videos_unfinished ON videos (status)"
        f" WHERE status NOT IN {_TERMINAL_SQL}",
    ),
    (
        # The per-caller cap (claim's max_active) counts one owner's unfinished rows: this partial index
        # answers that count without reading the table, nor any finished video. Existing rows need no
        # change; the index is built from them.
        f"CREATE INDEX IF NOT EXISTS videos_owner_unfinished ON videos (owner)"
        f" WHERE status NOT IN {_TERMINAL_SQL}",
    ),
    (
        # The archive's indexes (issue 11): the archiver's recovery scan and the retention sweeper read only
        # the rows these partial indexes hold, in their order. Fixed-width UTC text (index_text): text order
        # is time order.
        _add_archive_columns,
        "CREATE INDEX IF NOT EXISTS videos_unarchived ON videos (unarchived_since)"
        " WHERE unarchived_since IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS videos_archived_until ON videos (archived_until)"
        " WHERE archived_until IS NOT NULL",
        _fill_archive_columns,
    ),
    (
        # List (issue 12): one owner's videos, newest first, walked in this index's order from a cursor.
        _add_list_columns,
        "CREATE INDEX IF NOT EXISTS videos_owner_created ON videos (owner, create_time DESC, id DESC)",
        # Named secrets made once per data file (List's page token key).
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL)",
    ),
    (
        # Which key uploaded each runway:// URI (issue 12), until the URI expires: a Generate naming it is
        # created with that key. Rows past expire_time (fixed-width UTC text) are pruned by each save, in
        # the order of this index, so the table holds about one lifetime (24 h) of uploads.
        """
        CREATE TABLE IF NOT EXISTS uploads (
            uri         TEXT PRIMARY KEY NOT NULL,
            key         TEXT NOT NULL,
            expire_time TEXT NOT NULL
        )
        """,
        "CREATE INDEX IF NOT EXISTS uploads_expire_time ON uploads (expire_time)",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION


class SqliteVideoStore:
    """VideoStore on one SQLite file. See the module docstring for threading and durability."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._worker: _Worker | None = None
        self._conn: sqlite3.Connection | None = None  # touched only on the worker thread
        self._closed = False
        self._cache: dict[str, VideoRecord] = {}  # terminal records; written only on the worker thread

    @property
    def path(self) -> str:
        return self._path

    async def __aenter__(self) -> SqliteVideoStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- lifecycle -------------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise RuntimeError("the video store is closed")
        if self._worker is not None:
            return
        self._worker = _Worker("videogen-store")
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._worker.stop()
            self._worker = None
            raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is None:
            return
        # Queued behind the calls already submitted, so those finish first.
        try:
            await worker.submit(self._close_sync)
        finally:
            worker.stop()  # the worker is idle now and exits at once

    # -- VideoStore ------------------------------------------------------------------------------------

    async def check(self) -> None:
        self._check_open()  # an open file answers: nothing to ask it

    async def get(self, video_id: str, *, owner: str | None = None) -> VideoRecord | None:
        self._check_open()
        cached = self._cache.get(video_id)
        # Another owner's cached record is a miss, like an unknown id: both then run the same owner-scoped
        # query below, which finds no row for either (see VideoStore.get).
        if cached is not None and (owner is None or cached.owner == owner):
            return cached
        return await self._run(self._get_sync, video_id, owner)

    async def claim(self, record: VideoRecord, *, max_active: int | None = None) -> tuple[VideoRecord, bool]:
        if max_active is None:
            return await self._run(self._claim_sync, record)
        return await self._run(self._claim_capped_sync, record, max_active)

    async def save(self, record: VideoRecord) -> VideoRecord:
        return await self._run(self._save_sync, record)

    async def delete(self, video_id: str) -> None:
        await self._run(self._delete_sync, video_id)

    async def list_unfinished(self) -> list[VideoRecord]:
        return await self._run(self._list_unfinished_sync)

    async def list_unarchived(self, limit: int = 100) -> list[VideoRecord]:
        return await self._run(self._list_unarchived_sync, limit)

    async def list_expired(self, now: datetime, limit: int = 100) -> list[VideoRecord]:
        return await self._run(self._list_expired_sync, index_text(now), limit)

    async def list_page(
        self,
        owner: str,
        query: ListQuery,
        *,
        after: ListCursor | None,
        limit: int,
        scan_limit: int = SCAN_BUDGET,
    ) -> ListPage:
        return await self._run(self._list_page_sync, owner, query, after, limit, max(scan_limit, limit))

    async def secret(self, name: str) -> bytes:
        return await self._run(self._secret_sync, name)

    async def save_upload(self, uri: str, key: str, expire_time: datetime) -> None:
        await self._run(self._save_upload_sync, uri, key, index_text(expire_time), index_text(utcnow()))

    async def upload_key(self, uri: str) -> str | None:
        return await self._run(self._upload_key_sync, uri, index_text(utcnow()))

    # -- plumbing (event loop side) --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._worker is None:
            raise RuntimeError(
                "the video store is closed" if self._closed else "the video store is not open (await open())"
            )

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        self._check_open()
        assert self._worker is not None
        return await self._worker.submit(fn, *args)

    # -- worker thread only ----------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the video store is not open")
        return self._conn

    def _open_sync(self) -> None:
        # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE / COMMIT ourselves.
        conn = sqlite3.connect(
            self._path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"cannot put {self._path} in WAL mode (got {mode!r})")
            # Safe against process crashes; power loss may lose the last commits (see module docstring).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
            self._migrate_sync()
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _migrate_sync(self) -> None:
        conn = self._db()
        with self._transaction():
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self._path} has schema version {version}, newer than this server's {SCHEMA_VERSION}"
                )
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    if callable(statement):
                        statement(conn)
                    else:
                        conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        self._cache.clear()
        if conn is not None:
            conn.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db())

    def _remember(self, record: VideoRecord) -> None:
        if not record.status.terminal:
            self._cache.pop(record.id, None)
            return
        self._cache[record.id] = record
        while len(self._cache) > _CACHE_MAX:
            del self._cache[next(iter(self._cache))]  # the oldest entry

    def _select_sync(self, video_id: str) -> VideoRecord | None:
        row = self._db().execute("SELECT data FROM videos WHERE id = ?", (video_id,)).fetchone()
        return None if row is None else decode_record(row[0])

    def _select_owned_sync(self, video_id: str, owner: str) -> VideoRecord | None:
        # The owner is in the query, not checked after it: another owner's row is never even decoded.
        row = (
            self._db()
            .execute("SELECT data FROM videos WHERE id = ? AND owner = ?", (video_id, owner))
            .fetchone()
        )
        return None if row is None else decode_record(row[0])

    def _get_sync(self, video_id: str, owner: str | None = None) -> VideoRecord | None:
        record = self._select_sync(video_id) if owner is None else self._select_owned_sync(video_id, owner)
        if record is not None and record.status.terminal:
            self._remember(record)
        return record

    def _insert_sql(self, or_ignore: bool) -> str:
        return (
            "INSERT INTO videos (id, owner, request_id, status, updated_at, data, unarchived_since,"
            " archived_until, create_time, model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            + (" ON CONFLICT DO NOTHING" if or_ignore else "")
        )

    @staticmethod
    def _row(record: VideoRecord) -> tuple[str, str, str, str, str, str, str | None, str | None]:
        return (
            record.id,
            record.owner,
            record.request_id,
            record.status.value,
            format_time(record.update_time),
            encode_record(record),
            *_index_columns(record),
        )

    @classmethod
    def _insert_row(cls, record: VideoRecord) -> tuple[str | None, ...]:
        """`_row` and the columns only an INSERT writes (List's: they never change)."""
        return (*cls._row(record), index_text(record.create_time), record.model)

    def _claim_sync(self, record: VideoRecord) -> tuple[VideoRecord, bool]:
        conn = self._db()
        row = self._insert_row(record)
        if not record.request_id:
            try:
                # One statement outside BEGIN: SQLite runs it as its own (durable, atomic) transaction.
                conn.execute(self._insert_sql(or_ignore=False), row)
            except sqlite3.IntegrityError as e:
                raise ValueError(f"video id {record.id!r} already exists") from e
            return record, True
        # The common case, a fresh key, is one statement: DO NOTHING on any uniqueness conflict.
        if conn.execute(self._insert_sql(or_ignore=True), row).rowcount == 1:
            return record, True
        # A taken key (or id): retry and read the holder in one transaction, so a concurrent delete of
        # the holder cannot come between the conflict and the read.
        with self._transaction():
            inserted = conn.execute(self._insert_sql(or_ignore=True), row).rowcount == 1
            if inserted:
                stored = record
            else:
                found = conn.execute(
                    "SELECT data FROM videos WHERE owner = ? AND request_id = ?",
                    (record.owner, record.request_id),
                ).fetchone()
                if found is None:
                    raise ValueError(f"video id {record.id!r} already exists")
                stored = decode_record(found[0])
        if stored.status.terminal:
            self._remember(stored)
        return stored, inserted

    def _claim_capped_sync(self, record: VideoRecord, max_active: int) -> tuple[VideoRecord, bool]:
        """`claim` with the per-caller cap: the key lookup, the owner's count and the insert in one write
        transaction (BEGIN IMMEDIATE), so that no other process sharing the file inserts in between."""
        conn = self._db()
        with self._transaction():
            if record.request_id:
                found = conn.execute(
                    "SELECT data FROM videos WHERE owner = ? AND request_id = ?",
                    (record.owner, record.request_id),
                ).fetchone()
                if found is not None:  # a replay: the existing video, whatever the count
                    stored = decode_record(found[0])
                    if stored.status.terminal:
                        self._remember(stored)
                    return stored, False
            # Served by the partial index videos_owner_unfinished (migration 2).
            (active,) = conn.execute(
                f"SELECT count(*) FROM videos WHERE owner = ? AND status NOT IN {_TERMINAL_SQL}",
                (record.owner,),
            ).fetchone()
            if active >= max_active:
                raise errors.ActiveLimitReached(record.owner, max_active)
            try:
                conn.execute(self._insert_sql(or_ignore=False), self._insert_row(record))
            except sqlite3.IntegrityError as e:
                raise ValueError(f"video id {record.id!r} already exists") from e
        return record, True

    def _save_sync(self, record: VideoRecord) -> VideoRecord:
        conn = self._db()
        _, owner, request_id, status, updated_at, data, since, until = self._row(record)
        # The common case, a stored non-terminal record of the same owner and key (last writer wins), is
        # one guarded UPDATE run as its own transaction: no read, no decode. Anything else (unknown id, a
        # changed owner or key, a terminal stored record to merge into) takes the read-check-write below.
        cur = conn.execute(
            "UPDATE videos SET status = ?, updated_at = ?, data = ?, unarchived_since = ?, archived_until = ?"
            f" WHERE id = ? AND owner = ? AND request_id = ? AND status NOT IN {_TERMINAL_SQL}",
            (status, updated_at, data, since, until, record.id, owner, request_id),
        )
        if cur.rowcount == 1:
            self._remember(record)
            return record
        with self._transaction():
            stored = self._select_sync(record.id)
            if stored is None:
                raise KeyError(record.id)
            if (stored.owner, stored.request_id) != (record.owner, record.request_id):
                raise ValueError(f"video {record.id!r}: owner and request_id cannot change")
            new = stored.merged_with(record)
            if new != stored:
                _, _, _, status, updated_at, data, since, until = self._row(new)
                conn.execute(
                    "UPDATE videos SET status = ?, updated_at = ?, data = ?, unarchived_since = ?,"
                    " archived_until = ? WHERE id = ?",
                    (status, updated_at, data, since, until, new.id),
                )
        self._remember(new)
        return new

    def _delete_sync(self, video_id: str) -> None:
        with self._transaction():
            self._db().execute("DELETE FROM videos WHERE id = ?", (video_id,))
        self._cache.pop(video_id, None)

    def _list_unfinished_sync(self) -> list[VideoRecord]:
        # No ORDER BY: SQLite would then scan the whole table instead of the small partial index.
        rows = (
            self._db()
            .execute(f"SELECT rowid, data FROM videos WHERE status NOT IN {_TERMINAL_SQL}")
            .fetchall()
        )
        records = [(decode_record(data), rowid) for rowid, data in rows]
        records.sort(key=lambda r: (r[0].create_time, r[1]))
        return [record for record, _ in records]

    def _list_unarchived_sync(self, limit: int) -> list[VideoRecord]:
        # Served in order by the partial index videos_unarchived (rowid breaks ties: it is in the index).
        rows = (
            self._db()
            .execute(
                "SELECT data FROM videos WHERE unarchived_since IS NOT NULL"
                " ORDER BY unarchived_since, rowid LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [decode_record(data) for (data,) in rows]

    def _list_expired_sync(self, now: str, limit: int) -> list[VideoRecord]:
        # Served in order by the partial index videos_archived_until (a comparison implies NOT NULL).
        rows = (
            self._db()
            .execute(
                "SELECT data FROM videos WHERE archived_until <= ? ORDER BY archived_until, rowid LIMIT ?",
                (now, limit),
            )
            .fetchall()
        )
        return [decode_record(data) for (data,) in rows]

    def _list_page_sync(
        self, owner: str, query: ListQuery, after: ListCursor | None, limit: int, scan_limit: int
    ) -> ListPage:
        # Served by videos_owner_created: the owner's entries from the cursor, in order, no sort. One
        # statement: one read transaction, so the page is one snapshot. Status and model come from their
        # columns; only the matches' data is decoded. One row past the budget says whether any is left.
        sql = "SELECT create_time, id, status, model, data FROM videos WHERE owner = ?"
        args: list[object] = [owner]
        if after is not None:
            sql += " AND (create_time, id) < (?, ?)"
            args += [index_text(after.create_time), after.id]
        sql += " ORDER BY create_time DESC, id DESC LIMIT ?"
        args.append(scan_limit + 1)
        wanted = None if query.status is None else {s.value for s in statuses_of(query.status)}
        found: list[VideoRecord] = []
        last: tuple[str, str] | None = None
        rows = self._db().execute(sql, args)
        for examined, (create_time, video_id, status, model, data) in enumerate(rows):
            if len(found) >= limit:
                return ListPage(found)
            if examined >= scan_limit:
                assert last is not None
                return ListPage(found, ListCursor(parse_time(last[0]), last[1]))
            last = (create_time, video_id)
            if (wanted is None or status in wanted) and (query.model is None or model == query.model):
                found.append(decode_record(data))
        return ListPage(found)

    def _secret_sync(self, name: str) -> bytes:
        # INSERT OR IGNORE then read, in one write transaction: of two processes making it at once, the
        # first insert wins and both read it.
        conn = self._db()
        with self._transaction():
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (name, secrets.token_bytes(32)),
            )
            (value,) = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return bytes(value)

    def _save_upload_sync(self, uri: str, key: str, expire_time: str, now: str) -> None:
        # The prune and the upsert in one write transaction; the prune reads uploads_expire_time only.
        conn = self._db()
        with self._transaction():
            conn.execute("DELETE FROM uploads WHERE expire_time <= ?", (now,))
            conn.execute(
                "INSERT INTO uploads (uri, key, expire_time) VALUES (?, ?, ?)"
                " ON CONFLICT (uri) DO UPDATE SET key = excluded.key, expire_time = excluded.expire_time",
                (uri, key, expire_time),
            )

    def _upload_key_sync(self, uri: str, now: str) -> str | None:
        row = (
            self._db()
            .execute("SELECT key FROM uploads WHERE uri = ? AND expire_time > ?", (uri, now))
            .fetchone()
        )
        return None if row is None else str(row[0])


class _Worker:
    """One thread running the submitted calls one at a time, in submission order; each call's outcome is
    handed back to the submitting loop (``call_soon_threadsafe``). A call whose future was cancelled before
    it started is skipped (as ThreadPoolExecutor does); one already running completes."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        # A daemon: a store never closed must not keep the process alive (SQLite survives being cut off).
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return future

    def stop(self) -> None:
        """The thread exits after the calls already submitted."""
        self._queue.put(None)

    def _main(self) -> None:
        while (call := self._queue.get()) is not None:
            loop, future, fn, args = call
            if future.cancelled():
                continue
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # every failure belongs to the awaiting task
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, future, result, error)
            del call, future, result, error  # drop references while idle


_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[object, ...]]


def _settle(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    """On the loop: complete the future, unless its task was cancelled meanwhile."""
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _Transaction:
    """BEGIN IMMEDIATE (take the write lock up front: no deadlock-prone lock upgrade) ... COMMIT/ROLLBACK."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        elif self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
