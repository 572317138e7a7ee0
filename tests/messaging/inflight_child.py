"""A consumer process for the kill -9 test of ``test_consumer_concurrency``.

Consumes ``stovepipe.process`` on one partition with several records in
flight; appends ``started <offset>`` and ``done <offset>`` lines to a journal;
a record of Queue ``slow`` never finishes. Run as
``python inflight_child.py <bootstrap> <topic_prefix> <group> <journal>``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from stovepipe.messaging import Bus, Delivery, KafkaSettings


async def main(bootstrap: str, prefix: str, group: str, journal: Path) -> None:
    settings = KafkaSettings(
        bootstrap_servers=bootstrap,
        client_id="inflight-child",
        topic_prefix=prefix,
        partitions=1,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        max_in_flight=8,
    )
    bus = Bus(settings)
    out = journal.open("a", buffering=1)

    async def handle(payload: Any, delivery: Delivery) -> None:
        out.write(f"started {delivery.offset}\n")
        if payload.queue == "slow":
            await asyncio.Event().wait()
        out.write(f"done {delivery.offset}\n")

    bus.consumer.subscribe("stovepipe.process", handle, group=group)
    async with bus:
        out.write("ready\n")
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
