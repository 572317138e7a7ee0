"""Pruning of kept build logs older than ``storage.build_log_retention_days``.

Run by the API process (the one process every deployment has) once an hour.
Deleting by age is idempotent, so several replicas pruning at once is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from stovepipe.storage import Store
from stovepipe.telemetry.freshness import utcnow

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0


async def prune_once(
    store: Store, retention_days: float, clock: Callable[[], datetime] = utcnow
) -> int:
    """Delete the logs kept longer than the retention; returns how many went."""
    pruned = await store.prune_build_logs(clock() - timedelta(days=retention_days))
    if pruned:
        log.info("pruned %d build logs older than %g days", pruned, retention_days)
    return pruned


async def prune_until_stopped(
    store: Store, retention_days: float, stop: asyncio.Event, interval_s: float = PRUNE_INTERVAL_S
) -> None:
    while not stop.is_set():
        try:
            await prune_once(store, retention_days)
        except Exception:
            log.exception("pruning build logs failed; trying again in %.0fs", interval_s)
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            continue
