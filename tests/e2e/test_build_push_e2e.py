"""Pushed build ends end to end: the local runner's ``WatchBuilds`` over real gRPC,
the buildwatch worker, the real broker and PostgreSQL.

Which path settled a build is read from the buildsignal deliveries themselves
(pushed or polled), not from how long it took.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.live import Live, live_stack
from stovepipe.messaging import Delivery, DeliveryHandler
from stovepipe.runtime.sample_repo import STEPS
from stovepipe.stages import topics
from stovepipe.testing import until
from stovepipe.v1 import topics_pb2, types_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.postgres]


class Deliveries:
    """Every buildsignal message delivered to the stage, in order."""

    def __init__(self) -> None:
        self.seen: list[topics_pb2.BuildSignalMessage] = []

    def wrap(self, topic: str, handler: DeliveryHandler) -> DeliveryHandler:
        if not topic.endswith(topics.BUILDSIGNAL):
            return handler

        async def observed(message: Any, delivery: Delivery) -> None:
            self.seen.append(message)
            await handler(message, delivery)

        return observed

    def count(self, pushed: bool) -> int:
        return sum(1 for m in self.seen if m.pushed is pushed)


async def _watched(live: Live) -> None:
    async def open_stream() -> bool:
        return bool(live.runner.runner.watchers)

    await until(open_stream, what="the buildwatch stream to the runner")


async def test_a_pushed_end_settles_the_build_before_its_next_poll(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    """With polls two minutes apart, the verdict comes from the push: one poll (the
    first, right after the trigger) and one pushed message were delivered."""
    deliveries = Deliveries()
    async with live_stack(
        tmp_path,
        kafka_bootstrap,
        migrated_pg_url,
        kafka=live_kafka,
        workers={"buildsignal_poll_interval_seconds": 120, "sweeper_stale_after_seconds": 600},
        wrap=deliveries.wrap,
    ) as live:
        await _watched(live)
        live.repo.commit(STEPS[0].files, STEPS[0].title)
        request = await live.wait_terminal((await live.ingest()).request_id)

        assert request.state == types_pb2.REQUEST_STATE_SUCCEEDED
        assert deliveries.count(pushed=True) >= 1
        assert deliveries.count(pushed=False) == 1


async def test_a_lost_push_is_covered_by_polling(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    deliveries = Deliveries()
    async with live_stack(
        tmp_path,
        kafka_bootstrap,
        migrated_pg_url,
        kafka=live_kafka,
        workers={"buildsignal_poll_interval_seconds": 1},
        wrap=deliveries.wrap,
    ) as live:
        await _watched(live)
        drop: Callable[[Any], None] = lambda _ended: None  # noqa: E731
        live.runner.runner._ended.publish = drop  # every notice lost on the way

        live.repo.commit(STEPS[0].files, STEPS[0].title)
        request = await live.wait_terminal((await live.ingest()).request_id)

        assert request.state == types_pb2.REQUEST_STATE_SUCCEEDED
        assert deliveries.count(pushed=True) == 0
        assert deliveries.count(pushed=False) >= 2
