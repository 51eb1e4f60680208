"""How big each StreamContent data message of an archived read is: small for a slow reader, large for a
fast one.

gRPC's cost per byte falls with the message size (a bare grpc.aio server here: ~0.8 ms of CPU per MiB in
256 KiB messages, ~0.6 in 1 MiB ones; docs/benchmarks.md), and each message the service sends also costs
a fixed amount of Python (its generators, the telemetry count). But a message is held in memory until the
reader has taken it: a reader taking 10 MiB/s holds a 1 MiB message for 100 ms, and 50 such readers held
~140 MiB where 256 KiB messages held ~18 (bench/slow_readers.py, measured in issue 11).

So the size follows the reader's rate: a stream starts at the configured chunk size (VIDEOGEN_CHUNK_SIZE,
the floor); once it has sent RAMP bytes, each message is twice the last (up to the ceiling) while the
reader has taken the last WINDOW bytes at FAST_RATE or more, and back at the floor as soon as it has not.
RAMP because the first megabytes of any stream go at memory speed into the reader's HTTP/2 window and the
sockets' buffers, whatever the reader's pace; a window of bytes, not one message, because a single take
is noisy (a fast reader on a busy host sometimes waits a few ms), while a reader that pauses shows it at
once (one take longer than WINDOW / FAST_RATE, 31 ms, is enough). A reader that goes at 10 MiB/s
throughout never gets a large message; one that is slow on average but catches up in bursts gets them
while it bursts, and holds one until its next slow take shows (50 such readers in bench/slow_readers.py:
15 of them got some, and the server held ~30 MiB instead of ~15).

So a hard bound too, service-wide: at most LARGE_STREAMS streams send messages above the floor at once
(LargeMessageBudget); the others stay at the floor until one gives its place back (by going back to the
floor or ending). The memory held in large messages is then at most LARGE_STREAMS x ~3 MiB (the chunk
read, its encoded message, and gRPC's copy of it), whatever the number of streams.

"Took" is the time from handing the message on (the generator's yield) to being asked for the next one:
grpc.aio asks for the next message when the previous send has completed, which waits for the reader's
HTTP/2 flow-control window.
"""

from __future__ import annotations

from collections import deque

__all__ = [
    "FAST_RATE",
    "LARGE_STREAMS",
    "MAX_MESSAGE",
    "RAMP",
    "WINDOW",
    "LargeMessageBudget",
    "MessageSizes",
]

FAST_RATE = 128 * 1024 * 1024  # bytes/s: a reader at least this fast gets larger messages
RAMP = 16 * 1024 * 1024  # bytes sent before any message grows (more than the window and buffers hold)
WINDOW = 4 * 1024 * 1024  # the reader's rate is measured over its last takes of this many bytes
LARGE_STREAMS = 32  # streams sending messages above the floor at once, service-wide
MAX_MESSAGE = 1024 * 1024  # the ceiling (VIDEOGEN_CHUNK_SIZE's own upper bound; 1/4 of gRPC's default limit)


class LargeMessageBudget:
    """Places for streams whose messages are above the floor: shared by every stream of the service."""

    __slots__ = ("_free", "limit")

    def __init__(self, limit: int = LARGE_STREAMS) -> None:
        self.limit = limit
        self._free = limit

    @property
    def in_use(self) -> int:
        return self.limit - self._free

    def take(self) -> bool:
        if self._free <= 0:
            return False
        self._free -= 1
        return True

    def give_back(self) -> None:
        if self._free >= self.limit:
            raise RuntimeError("a place given back that was not taken")
        self._free += 1


class MessageSizes:
    """The sizes of one stream's data messages. Call it for the next size; `taken(size, seconds)` after
    each message says how long the reader took it; `close()` when the stream ends (gives back its place in
    the budget, if it has one)."""

    __slots__ = (
        "_budget",
        "_ceiling",
        "_floor",
        "_placed",
        "_recent",
        "_recent_bytes",
        "_recent_seconds",
        "_sent",
        "_size",
    )

    def __init__(
        self, floor: int, ceiling: int = MAX_MESSAGE, budget: LargeMessageBudget | None = None
    ) -> None:
        if floor <= 0:
            raise ValueError("floor must be positive")
        self._floor = floor
        self._ceiling = max(floor, ceiling)
        self._budget = budget  # None: no service-wide bound (tests of the rule alone)
        self._placed = False  # whether this stream holds a place in the budget
        self._size = floor
        self._sent = 0  # bytes the reader has taken so far
        self._recent: deque[tuple[int, float]] = deque()  # the last takes: (bytes, seconds), WINDOW bytes
        self._recent_bytes = 0
        self._recent_seconds = 0.0

    def __call__(self) -> int:
        return self._size

    def taken(self, size: int, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self._sent += size
        self._recent.append((size, seconds))
        self._recent_bytes += size
        self._recent_seconds += seconds
        while self._recent_bytes - self._recent[0][0] >= WINDOW:
            old_size, old_seconds = self._recent.popleft()
            self._recent_bytes -= old_size
            self._recent_seconds -= old_seconds
        # The rate compared without dividing (takes can last 0 s on a coarse clock).
        fast = self._recent_bytes >= FAST_RATE * self._recent_seconds
        if fast and self._sent >= RAMP and self._ceiling > self._floor and self._place():
            self._size = min(self._ceiling, self._size * 2)
        else:
            self._size = self._floor
            self.close()

    def _place(self) -> bool:
        if not self._placed:
            self._placed = self._budget is None or self._budget.take()
        return self._placed

    def close(self) -> None:
        if self._placed:
            self._placed = False
            if self._budget is not None:
                self._budget.give_back()
