"""Left-over partial files of a local-directory archive.

obstore's LocalStore writes an object to ``<key>#<n>`` beside its final name and renames it when the write
completes; an aborted put removes it. A process killed in the middle of a copy (kill -9, a crash, the node
lost) leaves that file behind, and nothing else would ever remove it: listings hide it, and the copy is
redone under a new temporary name. So at open, a local archive removes partial files that have not been
written to for `max_age`: a live copy (here or on another replica sharing the directory) writes every few
seconds and finishes in minutes, so a file that old belongs to no copy any more.

S3 has the same problem for multipart uploads; there a bucket lifecycle rule aborts incomplete uploads
(README, "The output archive").
"""

from __future__ import annotations

import logging
import os
import re
import time

log = logging.getLogger(__name__)

_PARTIAL = re.compile(r"#\d+$")


def remove_stale_partials(root: str, max_age: float, *, now: float | None = None) -> int:
    """Remove every ``*#<n>`` file under `root` last modified more than `max_age` seconds ago. Blocking (a
    directory walk): run it in a thread. Returns how many were removed; errors on single files are logged
    and skipped (another replica may remove the same file at the same moment)."""
    cutoff = (time.time() if now is None else now) - max_age
    removed = 0
    for directory, _, files in os.walk(root):
        for name in files:
            if not _PARTIAL.search(name):
                continue
            path = os.path.join(directory, name)
            try:
                if os.stat(path).st_mtime >= cutoff:
                    continue  # a copy may still be writing it
                os.remove(path)
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("archive: cannot remove partial file %s: %s", path, exc.strerror or exc)
    if removed:
        log.info("archive: removed %d partial file(s) left by copies that were cut off", removed)
    return removed
