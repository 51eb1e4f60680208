"""How big each StreamContent data message of an archived read is: small for a slow reader, large for a
fast one.

gRPC's cost per byte falls with the message size (a bare grpc.aio server here: ~0.8 ms of CPU per MiB in
256 KiB messages, ~0.6 in 1 MiB ones; docs/benchmarks.md), and each message the service sends also costs
a fixed amount of Python (its generators, the telemetry count). But a message is held in memory until the
reader has taken it: a reader taking 10 MiB/s holds a 1 MiB message for 100 ms, and 50 such readers held
~140 MiB where 256 KiB messages held ~18 (bench/slow_readers.py, measured in issue 11).

So the size follows the reader, the way TCP's window does: a stream starts at the configured chunk size
(VIDEOGEN_CHUNK_SIZE, the floor); each message the reader took at FAST_RATE or more doubles the next one,
up to the ceiling; a message it took more slowly sends the next one back to the floor. The memory held in
large messages is then bounded by bandwidth, not by the number of streams: only a reader that drains a
message within ceiling / FAST_RATE (8 ms for 1 MiB) gets one, so however many streams are open, the large
messages in flight are at most about (the host's bandwidth / FAST_RATE) of them.

"Took" is the time from handing the message on (the generator's yield) to being asked for the next one:
grpc.aio asks for the next message when the previous send has completed, which waits for the reader's
HTTP/2 flow-control window.
"""

from __future__ import annotations

__all__ = ["FAST_RATE", "MAX_MESSAGE", "MessageSizes"]

FAST_RATE = 128 * 1024 * 1024  # bytes/s: a reader at least this fast gets larger messages
MAX_MESSAGE = 1024 * 1024  # the ceiling (VIDEOGEN_CHUNK_SIZE's own upper bound; 1/4 of gRPC's default limit)


class MessageSizes:
    """The sizes of one stream's data messages. Call it for the next size; `taken(size, seconds)` after
    each message says how long the reader took it."""

    __slots__ = ("_ceiling", "_floor", "_size")

    def __init__(self, floor: int, ceiling: int = MAX_MESSAGE) -> None:
        if floor <= 0:
            raise ValueError("floor must be positive")
        self._floor = floor
        self._ceiling = max(floor, ceiling)
        self._size = floor

    def __call__(self) -> int:
        return self._size

    def taken(self, size: int, seconds: float) -> None:
        if size * 1.0 >= FAST_RATE * seconds:  # size / seconds >= FAST_RATE, without dividing by 0
            self._size = min(self._ceiling, self._size * 2)
        else:
            self._size = self._floor

