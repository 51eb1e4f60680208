"""CircuitBreaker: fail fast while Runway's API cannot be reached at all (issue 4).

It counts attempts whose connection could not be OPENED (httpx.ConnectError / ConnectTimeout: nothing was
sent). After `threshold` of them in a row the circuit opens: calls are refused at once, without touching the
network, with errors.UpstreamUnavailable (retry_after = the cooldown left, ErrorInfo metadata circuit=open).
When the cooldown has passed one call goes through as a probe (half-open): any HTTP response, even a 4xx/5xx,
closes the circuit; a connection that again cannot be opened re-opens it for twice the cooldown (up to
`max_cooldown`). Other outcomes (a read timeout, a reset after sending, a cancelled call) neither count nor
reset: the connection did open, or we cannot tell.

A refused call was never sent, so a refused create cannot have started a paid task (like a ConnectError).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from videogen_server import errors

log = logging.getLogger(__name__)


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 3,
        cooldown: float = 2.0,
        max_cooldown: float = 30.0,
        probe_wait: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        name: str = "Runway API",
    ) -> None:
        if threshold < 1 or cooldown <= 0 or max_cooldown < cooldown:
            raise ValueError("need threshold >= 1 and 0 < cooldown <= max_cooldown")
        self._threshold = threshold
        self._base_cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._probe_wait = probe_wait  # retry_after told to callers refused while a probe is in flight
        self._clock = clock
        self._name = name
        self._failures = 0  # connection failures in a row (closed state)
        self._cooldown = cooldown  # the current one: doubles per failed probe
        self._open_until: float | None = None  # None: closed
        self._probing = False  # half-open: the one probe is in flight

    @property
    def is_open(self) -> bool:
        """Open or half-open: calls are refused, but for the probe."""
        return self._open_until is not None

    def admit(self) -> bool:
        """Before an attempt. True: this attempt is the probe. Raises UpstreamUnavailable when refused."""
        if self._open_until is None:
            return False
        now = self._clock()
        if now >= self._open_until and not self._probing:
            self._probing = True
            return True
        wait = self._open_until - now if now < self._open_until else self._probe_wait
        error = errors.UpstreamUnavailable(
            f"{self._name} cannot be reached (circuit open); not trying again for {wait:.1f} s",
            retry_after=wait,
        )
        error.metadata["circuit"] = "open"
        raise error

    def connected(self, probe: bool) -> bool:
        """The attempt got an HTTP response (any status). True: this closed the circuit."""
        self._failures = 0
        if self._open_until is None:
            return False
        self._open_until = None
        self._probing = False
        self._cooldown = self._base_cooldown
        log.info("%s reachable again: circuit closed", self._name)
        return True

    def connect_failed(self, probe: bool) -> bool:
        """The attempt's connection could not be opened. True: this opened the circuit (it was closed)."""
        now = self._clock()
        if self._open_until is None:
            self._failures += 1
            if self._failures < self._threshold:
                return False
            self._cooldown = self._base_cooldown
            self._open_until = now + self._cooldown
            log.warning(
                "%s unreachable: %d connection attempts in a row failed; failing calls fast (circuit open)",
                self._name,
                self._failures,
            )
            return True
        if probe and self._probing:
            self._probing = False
            self._cooldown = min(self._cooldown * 2, self._max_cooldown)
            self._open_until = now + self._cooldown
            log.debug("%s probe failed; circuit stays open for %.1f s", self._name, self._cooldown)
        # Else: an attempt admitted before the circuit opened failed late; the circuit is already open.
        return False

    def released(self, probe: bool) -> None:
        """The attempt ended otherwise (read timeout, reset after sending, cancelled): no verdict."""
        if probe and self._probing:
            self._probing = False
