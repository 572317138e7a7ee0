"""Notice a broker that came back empty, and restart the worker that depends on it.

A broker that loses its data (the embedded broker always does on restart; a
real cluster can after an unclean recovery) leaves running consumers in a
state they do not recover from by themselves: their positions and group
membership refer to partitions that no longer exist, and commits keep failing.
Stovepipe's work is not lost — storage holds it and the sweeper re-drives it —
but the consumers must start over. The cleanest way is the way a crash is
handled: the process exits with :data:`EXIT_RESTART` and its supervisor
(``stovepipe up``, systemd, Kubernetes) starts it again; on start it recreates
its topics and joins fresh groups.

Detection: every process that consumes creates a marker topic at start-up
(:data:`EPOCH_TOPIC`, part of ``all_topics()``) that nothing ever produces to or
names, so no broker auto-creates it. When the broker answers but the marker or
one of the process's own topics is gone, the broker lost its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from aiokafka.admin import AIOKafkaAdminClient

from stovepipe.messaging import KafkaSettings

log = logging.getLogger(__name__)

EPOCH_TOPIC = "stovepipe.epoch"
"""Created at start-up by every consuming process; its absence means an emptied broker."""

EXIT_RESTART = 75
"""EX_TEMPFAIL: "start me again". ``stovepipe up`` restarts a child that exits with it."""


async def watch_topics(
    settings: KafkaSettings,
    topics: Iterable[str],
    on_lost: Callable[[list[str]], None],
    *,
    interval_s: float = 1.0,
) -> None:
    """Poll the topic list until cancelled; call ``on_lost(missing)`` once if topics vanish.

    ``topics`` are logical names; the marker is added. A broker that does not
    answer is not a verdict (it may be restarting): the watch waits for an
    answer that lists topics.
    """
    wanted = {settings.topic(t) for t in (*topics, EPOCH_TOPIC)}
    while True:
        await asyncio.sleep(interval_s)
        existing = await _list_topics(settings)
        if existing is None:
            continue
        missing = sorted(wanted - existing)
        if missing:
            on_lost(missing)
            return


async def _list_topics(settings: KafkaSettings) -> set[str] | None:
    client = AIOKafkaAdminClient(
        **settings.client_kwargs(),
        client_id=f"{settings.client_id}-watch",
        request_timeout_ms=5_000,
    )
    try:
        await asyncio.wait_for(client.start(), 5.0)
        return set(await asyncio.wait_for(client.list_topics(), 5.0))
    except Exception:  # the broker is away or restarting: no verdict
        return None
    finally:
        with contextlib.suppress(Exception):
            await client.close()
