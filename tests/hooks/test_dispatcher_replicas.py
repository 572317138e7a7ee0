"""Two hooks dispatchers on one database: each delivery sent by one of them at a time.

Both replicas run as processes (``stovepipe worker hooks``) against the real
broker, PostgreSQL, reference hooks server and loopback receivers. Each lane's
attempts are claimed on the delivery row, so the receivers — which count the
requests they are answering at once — never see two at a time for one
subscription (neither one delivery sent twice concurrently nor the next one
overtaking it), and the events arrive in event order. One replica is killed
with SIGKILL while a request is held in flight; what it was sending is sent
again once its claim runs out, by whichever dispatcher is left.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf.timestamp_pb2 import Timestamp

from harness.hooks import LINEAR, all_delivered, deliveries, new_secret, settled, step, webhook
from harness.live import Live, live_stack
from harness.webhook_receiver import WebhookReceiver
from stovepipe.hooks.lanes import delivery_id
from stovepipe.runtime.health import grpc_serving
from stovepipe.runtime.processes import free_port
from stovepipe.stages.topics import HOOK
from stovepipe.testing import until
from stovepipe.v1 import topics_pb2

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.postgres, pytest.mark.timeout(420)]

CLI = [sys.executable, "-m", "stovepipe.cli.main"]
TICKS = 24
"""Events from another producer (``events: all`` takes them), to give the lanes volume."""


class Dispatcher:
    """One ``stovepipe worker hooks`` process with a health port to wait on."""

    def __init__(self, config: Path, log: Path) -> None:
        self.health = f"127.0.0.1:{free_port()}"
        self.log = log
        port = self.health.rsplit(":", 1)[1]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*CLI, "worker", "hooks", "--config", str(config),
                 "--health-host", "127.0.0.1", "--health-port", port],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def ready(self) -> None:
        async def serving() -> bool:
            return await grpc_serving(self.health)

        await until(serving, timeout_s=120, what=f"the dispatcher on {self.health} ready")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


async def _ticks(live: Live, count: int) -> None:
    """``count`` events of a type another producer might publish, in time order."""
    start = datetime.now(UTC)
    for n in range(count):
        at = Timestamp()
        at.FromDatetime(start + timedelta(milliseconds=n))
        event = topics_pb2.HookEvent(
            id=f"tick-{start.timestamp():.0f}-{n}",
            source="/tests/ticks",
            type="dev.stovepipe.test.tick",
            spec_version="1.0",
            time=at,
            subject="e2e/main",
            # one key for all (the topic is keyed by request id): one partition, in order
            data=topics_pb2.GreennessEventData(queue="e2e/main", request_id="ticks"),
        )
        await live.bus.publish(HOOK, event)


@asynccontextmanager
async def _two_dispatchers(
    tmp_path: Path,
    kafka_bootstrap: str,
    migrated_pg_url: str,
    live_kafka: dict[str, Any],
    hooks: list[dict[str, Any]],
) -> AsyncIterator[tuple[Live, list[Dispatcher]]]:
    """A live stack without its own dispatcher, and two ``worker hooks`` processes on it,
    both ready; the processes are stopped on the way out (the list stays readable)."""
    dispatchers: list[Dispatcher] = []
    try:
        async with live_stack(
            tmp_path,
            kafka_bootstrap,
            migrated_pg_url,
            kafka=live_kafka,
            hooks_dispatcher=False,
            hooks=hooks,
        ) as live:
            config = tmp_path / "dispatcher.yaml"
            config.write_text(
                yaml.safe_dump(live.config.model_dump(mode="json", exclude_none=True))
            )
            for n in (1, 2):
                dispatchers.append(Dispatcher(config, tmp_path / f"dispatcher-{n}.log"))
            for dispatcher in dispatchers:
                await dispatcher.ready()
            yield live, dispatchers
    finally:
        for dispatcher in dispatchers:
            dispatcher.stop()


async def test_two_dispatchers_never_send_one_lane_twice_at_once(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    let_go = threading.Event()
    held = WebhookReceiver(new_secret(), delay_s=0.05, hold=let_go).start()
    flaky = WebhookReceiver(new_secret(), delay_s=0.05, fail_every=4).start()
    hooks = [
        webhook(tmp_path, "held", held, events="all", timeout_seconds=5),
        webhook(tmp_path, "flaky", flaky, events="all", timeout_seconds=5),
    ]
    dispatchers: list[Dispatcher] = []
    try:
        async with _two_dispatchers(
            tmp_path, kafka_bootstrap, migrated_pg_url, live_kafka, hooks
        ) as (live, dispatchers):
            await step(live, LINEAR[0])  # a real verdict: recorded + became_green
            # taken in before the ticks, which come after them in event order
            await until(lambda: _count(live, "held", 2), timeout_s=120, what="the verdict's rows")
            await _ticks(live, TICKS)
            await until(lambda: held.waiting == 1, timeout_s=120, what="a request held")
            dispatchers[0].kill()  # it may be the sender of the held request, or not
            held.hold = None
            let_go.set()
            count = 2 + TICKS
            held_rows = await settled(live, "held", count, timeout_s=180)
            flaky_rows = await settled(live, "flaky", count, timeout_s=180)
            assert all_delivered(held_rows) and all_delivered(flaky_rows)
    finally:
        let_go.set()
        held.stop()
        flaky.stop()
    logs = "\n".join(d.log.read_text()[-2000:] for d in dispatchers)
    assert held.max_in_flight == 1, logs
    assert flaky.max_in_flight == 1, logs
    assert any(r.attempts > 1 for r in flaky_rows), "the flaky receiver never made a retry"
    for receiver, rows in ((held, held_rows), (flaky, flaky_rows)):
        in_order = [delivery_id(r) for r in sorted(rows, key=lambda r: r.position)]
        first_seen = list(dict.fromkeys(r.webhook_id for r in receiver.accepted()))
        assert first_seen == in_order
    survivor = dispatchers[1].log.read_text()
    assert "attempt" in survivor, "the surviving dispatcher sent nothing"


async def test_a_claimed_delivery_waits_for_its_claim_not_for_a_restart(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    """The replica sending is killed and not restarted: the other one sends the delivery
    once the claim runs out, and only then."""
    let_go = threading.Event()
    receiver = WebhookReceiver(new_secret(), hold=let_go).start()
    hooks = [webhook(tmp_path, "bot", receiver, events="transitions", timeout_seconds=5)]
    dispatchers: list[Dispatcher] = []
    try:
        async with _two_dispatchers(
            tmp_path, kafka_bootstrap, migrated_pg_url, live_kafka, hooks
        ) as (live, dispatchers):
            await step(live, LINEAR[0])
            await until(lambda: receiver.waiting == 1, timeout_s=120, what="the attempt, held")
            sender = await _sender(dispatchers)
            sender.kill()
            let_go.set()  # the answer goes to a dead process
            rows = await settled(live, "bot", 1, timeout_s=120)
            assert all_delivered(rows)
    finally:
        let_go.set()
        receiver.stop()
    got = receiver.snapshot()
    assert len(got) == 2, "the delivery cut by kill -9 was not sent again exactly once"
    assert len({r.webhook_id for r in got}) == 1
    assert rows[0].attempts == 1  # the killed replica never recorded its attempt


async def _count(live: Live, hook: str, count: int) -> bool:
    return len(await deliveries(live, hook)) >= count


async def _sender(dispatchers: list[Dispatcher]) -> Dispatcher:
    """The replica that won the claim (it logs the attempt it is sending)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        busy = [d for d in dispatchers if _claimed_in_log(d)]
        if len(busy) == 1:
            return busy[0]
        await asyncio.sleep(0.1)
    raise AssertionError("cannot tell which dispatcher is sending")


def _claimed_in_log(dispatcher: Dispatcher) -> bool:
    return "sending hook delivery" in dispatcher.log.read_text()
