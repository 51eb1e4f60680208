"""Tunable behaviour of the Runway simulator (mutable: changes apply to later requests)."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass
class SimulatorConfig:
    """Knobs of the simulator; the defaults suit a live demo.

    Timing values are snapshotted per task at creation, so changing them later affects only new tasks
    (a task's lifecycle never jumps backwards).
    """

    pending_seconds: float = 1.0
    """Time a new task spends in PENDING before it may start (or becomes THROTTLED)."""
    running_seconds: float = 4.0
    """Time a task spends RUNNING, with ``progress`` rising from 0 to 1."""
    max_concurrency: int | None = 2
    """Concurrent RUNNING tasks per model; later tasks are THROTTLED in submission order. None = no cap."""
    output_size: int = 2 * MIB
    """Bytes of each output MP4 (generated lazily per range; 256 MiB costs no memory)."""
    output_bytes_per_second: float | None = None
    """Output downloads are paced to about this rate (a slow CDN: a copy that lasts long enough to be
    killed mid-way in a test). None = as fast as the connection goes."""
    output_url_ttl: float = 86400.0
    """Seconds until a minted output URL expires (then 403)."""
    credits: int = 1_000_000
    """Credit balance. Creates are charged their estimate; a create costing more than this gets a 400."""
    daily_limit: int | None = None
    """Creates per model per rolling 24 h before 429. None = unlimited."""
    fail_prompt_marker: str = "[sim:fail="
    """A ``promptText`` containing ``[sim:fail=CODE]`` makes the task end FAILED with ``failureCode`` CODE."""
    max_monthly_credit_spend: int = 10_000
    """Reported as ``tier.maxMonthlyCreditSpend`` by GET /v1/organization."""
