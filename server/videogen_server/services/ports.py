"""The ports of the use cases: what the services need from the world, as protocols in the domain's terms.
Implementations live beside their fakes (providers/, store/); the services import only this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from videogen_server.domain.video import GenerateSpec, UpstreamRequest, UpstreamTask

# --- the video provider ------------------------------------------------------------------------------
# Runway today (providers/runway/provider.py), an in-memory one for tests (providers/memory.py); several
# Runway keys or a second provider later. Everything provider-shaped (endpoints, bodies, status words,
# failure codes) stays behind this port: the services see plans, task references and UpstreamTask.


class TaskRef(Protocol):
    """A task the provider has just accepted."""

    @property
    def id(self) -> str: ...
    @property
    def estimated_credits(self) -> float | None: ...
    @property
    def status(self) -> str: ...  # the provider's word for a new task (recorded as upstream_status)


class OutputStreamLike(Protocol):
    """An open read of one output, from a byte offset."""

    @property
    def total_size(self) -> int | None: ...
    @property
    def content_type(self) -> str: ...
    def iter_chunks(self, chunk_size: int) -> AsyncIterator[bytes]: ...


class OutputSource(Protocol):
    """What the content relay needs: a task's output URLs, and ranged reads of them.

    Errors: UpstreamNotFound (no such task), OutputExpired (the URL no longer works: read the task again),
    OutOfRange (start past the end), UpstreamUnavailable (retryable), DeadlineExceeded."""

    async def get_task(self, task_id: str, *, deadline: float | None = None) -> UpstreamTask: ...

    def open_output(
        self, url: str, *, start: int = 0, end: int | None = None, deadline: float | None = None
    ) -> AbstractAsyncContextManager[OutputStreamLike]: ...


class VideoProvider(OutputSource, Protocol):
    """A generation provider, in the domain's terms."""

    def plan(self, spec: GenerateSpec) -> UpstreamRequest:
        """Validate `spec` and decide what to send: raises InvalidArgument with every violation. The plan's
        mode, seconds and size go on the video record; the rest is the provider's own (opaque here)."""
        ...

    async def create(self, plan: UpstreamRequest, *, deadline: float | None = None) -> TaskRef:
        """Start a (paid) task from a plan this provider made. `deadline` bounds only what happens before
        the request can reach the provider. Raises UpstreamOutcomeUnknown when the task may or may not
        exist; any other error means no task was started."""
        ...

    async def get_task(self, task_id: str, *, deadline: float | None = None) -> UpstreamTask:
        """The task as the provider sees it now (UpstreamNotFound: it no longer exists)."""
        ...

    async def cancel_task(self, task_id: str, *, deadline: float | None = None) -> bool:
        """Cancel (or delete) a task. False: it was already gone."""
        ...
