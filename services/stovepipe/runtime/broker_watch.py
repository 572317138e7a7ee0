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
    interval_s: float = 3.0,
) -> None:
    """Poll the topic list until cancelled; call ``on_lost(missing)`` once if topics vanish.

    ``topics`` are logical names; the marker is added. A broker that does not
    answer is not a verdict (it may be restarting): the watch waits for an
    answer that lists topics.
    """
    wanted = {settings.topic(t) for t in (*topics, EPOCH_TOPIC)}
    lister = _TopicLister(settings)
    try:
        while True:
            await asyncio.sleep(interval_s)
            existing = await lister.list()
            if existing is None:
                continue
            missing = sorted(wanted - existing)
            if missing:
                on_lost(missing)
                return
    finally:
        await lister.close()


class _TopicLister:
    """One admin client kept across questions (a fresh one per second cost an idle
    worker more CPU than its consumers: a connection, a bootstrap and a close);
    it is dropped and rebuilt after any failure, so a restarted broker is met by a
    new connection."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._client: AIOKafkaAdminClient | None = None

    async def list(self) -> set[str] | None:
        try:
            if self._client is None:
                self._client = AIOKafkaAdminClient(
                    **self._settings.client_kwargs(),
                    client_id=f"{self._settings.client_id}-watch",
                    request_timeout_ms=5_000,
                )
                await asyncio.wait_for(self._client.start(), 5.0)
            return set(await asyncio.wait_for(self._client.list_topics(), 5.0))
        except Exception:  # the broker is away or restarting: no verdict
            await self.close()
            return None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
