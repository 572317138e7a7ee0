"""Workers notice a broker that came back empty and ask their supervisor for a restart.

That the supervisor restarts them (as it restarts any exit) is in tests/cli/test_supervisor.py.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from stovepipe.embedded.broker import EmbeddedBroker
from stovepipe.messaging import KafkaSettings, ensure_topics
from stovepipe.runtime.broker_watch import EPOCH_TOPIC, watch_topics


async def test_watch_reports_topics_lost_with_the_broker(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    await broker.start()
    try:
        settings = KafkaSettings(broker.bootstrap_servers, topic_prefix=f"w{uuid.uuid4().hex[:8]}.")
        await ensure_topics(settings, ["stovepipe.process", EPOCH_TOPIC])
        lost: list[list[str]] = []
        watch = asyncio.create_task(
            watch_topics(settings, ["stovepipe.process"], lost.append, interval_s=0.2)
        )
        await asyncio.sleep(1.5)
        assert lost == []  # a healthy broker is left alone
        await broker.restart()  # memory-only: it comes back without any topic
        await asyncio.wait_for(watch, 30)
        assert lost == [sorted(settings.topic(t) for t in ("stovepipe.process", EPOCH_TOPIC))]
    finally:
        await broker.stop()
