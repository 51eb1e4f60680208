"""Listing a caller's videos (List, issue 12): what may be asked for and where a page resumes. Pure: no I/O.

The order is newest first: `create_time` descending, then `id` descending (ids break ties between videos
created in the same microsecond). A page resumes strictly after the last video of the previous page
(`ListCursor`), so videos created while a caller pages through sort before the first page and never shift
later pages: no video is skipped or repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from videogen_server.domain.video import VideoStatus

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ListQuery:
    """Which of a caller's videos a List returns (the parsed `filter`). None: no condition on that field.

    `status` is the status as callers see it: QUEUED also matches records still CREATING (shown as QUEUED)."""

    status: VideoStatus | None = None
    model: str | None = None


@dataclass(frozen=True)
class ListCursor:
    """The last video of the previous page: the next page holds only videos sorting after it (older, or
    as old with a smaller id)."""

    create_time: datetime
    id: str
