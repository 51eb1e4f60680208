"""Output archives: engines of the `OutputArchive` port (services/ports.py).

- `object_store.ObjectStoreArchive`: a local directory (``file:///abs/dir``) or an S3-compatible bucket
  (``s3://bucket/prefix``), on obstore: what the service runs on.
- `memory.MemoryArchive`: bytes in a dict, with fault hooks: for tests.

`open_archive` is the one place that turns the VIDEOGEN_ARCHIVE setting into an engine.
"""

from __future__ import annotations

from videogen_server.archive.memory import MemoryArchive
from videogen_server.config import resolve_archive_url
from videogen_server.services.ports import OutputArchive

__all__ = ["MemoryArchive", "open_archive"]


def open_archive(setting: str, data_dir: str) -> OutputArchive | None:
    """The archive VIDEOGEN_ARCHIVE names (`setting`, as `Config.archive` holds it, already checked), or
    None when it is "off". Not opened yet: the caller awaits `open()`, which proves it can be written
    (ArchiveUnavailable with one line otherwise), and `close()` at shutdown.

    obstore is imported here, on first use, so that a process with the archive off never loads it."""
    url = resolve_archive_url(setting, data_dir)
    if url is None:
        return None
    from videogen_server.archive.object_store import ObjectStoreArchive

    return ObjectStoreArchive(url)
