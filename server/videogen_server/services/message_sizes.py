"""How big each StreamContent data message of an archived read is: small for a slow reader, large for a
fast one.

gRPC's cost per byte falls with the message size (a bare grpc.aio server here: ~0.8 ms of CPU per MiB in
256 KiB messages, ~0.6 in 1 MiB ones; docs/benchmarks.md), and each message the service sends also costs
a fixed amount of Python (its generators, the telemetry count). But a message is held in memory until the
reader has taken it: a reader taking 10 MiB/s holds a 1 MiB message for 100 ms, and 50 such readers held
~140 MiB where 256 KiB messages held ~18 (bench/slow_readers.py, measured in issue 11).

So the size follows the reader's rate: a stream starts at the configured chunk size (VIDEOGEN_CHUNK_SIZE,
the floor), and once it has sent RAMP bytes, each message the reader took at FAST_RATE or more doubles the
next one (up to the ceiling) provided the stream as a whole has gone at FAST_RATE too; any message taken
more slowly sends the next one back to the floor. Both conditions matter: the first megabytes of any
stream go at memory speed into the reader's HTTP/2 window and the sockets' buffers, so a single message
says little until those are full (the whole stream's rate does), and a reader that was fast and then
pauses must not keep large messages (the last message's rate says so at once). A slow reader (10 MiB/s)
never gets a large message, and the memory held in large messages is bounded by bandwidth rather than by
the number of streams: at most about (the host's bandwidth / FAST_RATE) streams can have them.

"Took" is the time from handing the message on (the generator's yield) to being asked for the next one:
grpc.aio asks for the next message when the previous send has completed, which waits for the reader's
HTTP/2 flow-control window.
"""

from __future__ import annotations

__all__ = ["FAST_RATE", "MAX_MESSAGE", "RAMP", "MessageSizes"]

FAST_RATE = 128 * 1024 * 1024  # bytes/s: a reader at least this fast gets larger messages
RAMP = 16 * 1024 * 1024  # bytes sent before any message grows (more than the window and buffers hold)
MAX_MESSAGE = 1024 * 1024  # the ceiling (VIDEOGEN_CHUNK_SIZE's own upper bound; 1/4 of gRPC's default limit)


class MessageSizes:
    """The sizes of one stream's data messages. Call it for the next size; `taken(size, seconds)` after
    each message says how long the reader took it."""

    __slots__ = ("_ceiling", "_floor", "_seconds", "_sent", "_size")

    def __init__(self, floor: int, ceiling: int = MAX_MESSAGE) -> None:
        if floor <= 0:
            raise ValueError("floor must be positive")
        self._floor = floor
        self._ceiling = max(floor, ceiling)
        self._size = floor
        self._sent = 0  # bytes the reader has taken so far
        self._seconds = 0.0  # the time it took them

    def __call__(self) -> int:
        return self._size

    def taken(self, size: int, seconds: float) -> None:
        self._sent += size
        self._seconds += max(0.0, seconds)
        # Rates compared without dividing (a take can last 0 s on a coarse clock).
        fast = size >= FAST_RATE * seconds and self._sent >= FAST_RATE * self._seconds
        if fast and self._sent >= RAMP:
            self._size = min(self._ceiling, self._size * 2)
        else:
            self._size = self._floor
