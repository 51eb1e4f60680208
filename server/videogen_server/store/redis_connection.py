"""What every Redis engine here shares (store/redis.py, store/redis_coordinator.py): one way to connect, with
bounded timeouts, and one mapping of "Redis cannot serve us now" to `errors.StoreUnavailable`.

Connecting and each reply are bounded (`connect_timeout` 1 s, `socket_timeout` 2 s), so a dead or hung
Redis fails a call within about two seconds, not at the caller's deadline. A pooled connection found broken
is retried once on a fresh one (a restarted Redis costs no error); not on a timeout, and not more.
"""

from __future__ import annotations

import logging
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from videogen_server import errors

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_PREFIX",
    "RETRY_AFTER_S",
    "SOCKET_TIMEOUT_S",
    "connect",
    "is_unavailable",
    "unavailable",
]

DEFAULT_PREFIX: Final = "videogen:"
CONNECT_TIMEOUT_S: Final = 1.0
SOCKET_TIMEOUT_S: Final = 2.0
RETRY_AFTER_S: Final = 1.0


def connect(
    url: str, *, connect_timeout: float, socket_timeout: float, retry_broken: bool = True
) -> aioredis.Redis:
    """A client for `url` (connections are made on first use), replies decoded as str.

    `retry_broken`: one retry, at once, on a fresh connection, for a connection error only, so that a
    pooled connection a Redis restart broke costs no error. Off for a subscription, whose owner notices the
    break itself (it must, to say that notices may have been lost)."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 1 if retry_broken else 0, supported_errors=(rexc.ConnectionError,)),
        decode_responses=True,
    )


def is_unavailable(exc: BaseException) -> bool:
    """True for the errors that mean "Redis cannot serve us right now": unreachable, timing out, loading its
    data set after a restart, read-only (a replica), a replica cut off from its master (MASTERDOWN) or unable
    to persist (MISCONF).

    By class where redis-py has one: it strips the code from the text of the errors it maps (LOADING is
    BusyLoadingError, a ConnectionError; MASTERDOWN is MasterDownError). MISCONF has none: a plain
    ResponseError whose text still starts with the code."""
    unavailable_classes = (rexc.ConnectionError, rexc.TimeoutError, rexc.ReadOnlyError, rexc.MasterDownError)
    if isinstance(exc, unavailable_classes):
        return True
    return isinstance(exc, rexc.ResponseError) and str(exc).startswith("MISCONF")


def unavailable(log: logging.Logger, description: str, exc: Exception) -> errors.StoreUnavailable:
    """The error to raise for `exc` (one `is_unavailable` accepted), logged as a warning.

    The exception's text may name the host; never the password (redis-py does not print it), but the
    message stays generic anyway: it reaches callers."""
    log.warning("store %s unavailable: %s: %s", description, type(exc).__name__, exc)
    return errors.StoreUnavailable("the job store is unavailable; retry shortly", retry_after=RETRY_AFTER_S)
