"""Workers notice a broker that came back empty and ask their supervisor for a restart."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from stovepipe.embedded.broker import EmbeddedBroker
from stovepipe.messaging import KafkaSettings, ensure_topics
from stovepipe.runtime.broker_watch import EPOCH_TOPIC, EXIT_RESTART, watch_topics
from stovepipe.runtime.supervisor import ChildSpec, Supervisor


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


async def test_supervisor_respawns_a_child_that_asks_for_it(tmp_path: Path) -> None:
    supervisor = Supervisor(stop_timeout_s=5)
    asks = ChildSpec(
        "asks", [sys.executable, "-c", f"raise SystemExit({EXIT_RESTART})"], tmp_path / "a.log"
    )
    first = await supervisor.start(asks)
    await supervisor.start(
        ChildSpec(
            "stays", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "b.log"
        )
    )
    try:
        died = await asyncio.wait_for(supervisor.wait_any_exit(), 30)
        assert died is first and died.process.returncode == EXIT_RESTART
        fresh = await supervisor.respawn(died)
        assert [c.spec.name for c in supervisor.children] == ["asks", "stays"]
        assert fresh.pid != first.pid
    finally:
        await supervisor.stop()
