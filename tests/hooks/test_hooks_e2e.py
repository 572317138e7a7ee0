"""Hooks end to end: the real pipeline, broker, PostgreSQL, hooks server and HTTP receivers.

Receivers verify every Standard Webhooks signature with the ``standardwebhooks``
library; nothing between the record stage and the receiver is faked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from harness.hooks import LINEAR, all_delivered, new_secret, secret_file, settled, step, webhook
from harness.kcat import kcat_read
from harness.live import live_stack
from harness.webhook_receiver import WebhookReceiver
from plugins.broker import session_broker_is_tansu
from stovepipe.hooks.events import BECAME_BROKEN, BECAME_GREEN, VERDICT_RECORDED
from stovepipe.storage import HookDeliveryStatus
from stovepipe.testing import until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.broker,
    pytest.mark.postgres,
    pytest.mark.timeout(420),  # whole pipelines on a loaded 2-core machine
]

CLI = [sys.executable, "-m", "stovepipe.cli.main"]


def _types(receiver: WebhookReceiver) -> list[str]:
    return [r.event["type"] for r in receiver.accepted()]


async def _kafka_events(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(records) < count and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


async def test_linear_history_reaches_every_kind_with_valid_signatures(
    tmp_path: Path,
    kafka_bootstrap: str,
    migrated_pg_url: str,
    live_kafka: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stovepipe.hooks.log")
    every = WebhookReceiver(new_secret()).start()
    transitions = WebhookReceiver(new_secret()).start()
    # a receiver that still holds the previous key during a rotation
    old_key = new_secret()
    rotated = WebhookReceiver(old_key).start()
    topic = f"team-events-{uuid.uuid4().hex[:8]}"
    try:
        hooks = [
            webhook(tmp_path, "every", every, events="all"),
            webhook(tmp_path, "transitions", transitions, events="transitions"),
            {
                **webhook(tmp_path, "rotating", rotated, events="transitions"),
                "secret_file": str(secret_file(tmp_path, "new-key", new_secret())),
                "previous_secret_file": str(secret_file(tmp_path, "old-key", old_key)),
            },
            {"name": "team-topic", "kind": "kafka", "topic": topic, "events": "transitions"},
            {"name": "audit", "kind": "log", "events": "not_green"},
        ]
        async with live_stack(
            tmp_path, kafka_bootstrap, migrated_pg_url, kafka=live_kafka, hooks=hooks
        ) as live:
            uris = [await step(live, change) for change in LINEAR]
            for name, count in (("every", 8), ("transitions", 3), ("rotating", 3),
                                ("team-topic", 3), ("audit", 2)):  # fmt: skip
                rows = await settled(live, name, count)
                assert len(rows) == count and all_delivered(rows), (name, rows)
            listed = await live.stub.ListHookDeliveries(
                __import__(
                    "stovepipe.v1.stovepipe_service_pb2", fromlist=["x"]
                ).ListHookDeliveriesRequest(queue="e2e/main", state="delivered", page_size=100)
            )
            assert len(listed.deliveries) == 8 + 3 + 3 + 3 + 2

        assert all(r.verified for r in every.snapshot() + transitions.snapshot())
        assert all(r.verified for r in rotated.snapshot()), "the previous key no longer verifies"
        assert _types(transitions) == [BECAME_GREEN, BECAME_BROKEN, BECAME_GREEN]
        assert [r.event["data"]["commit"] for r in transitions.accepted()] == [
            uris[0],
            uris[2],
            uris[4],
        ]
        became_broken = transitions.accepted()[1].event
        assert became_broken["subject"] == "e2e/main"
        assert became_broken["data"]["previous"] == {"degree": 0.0, "commit": uris[1]}
        assert became_broken["data"]["last_green"] == uris[1]
        recorded = [r.event for r in every.accepted() if r.event["type"] == VERDICT_RECORDED]
        assert [e["data"]["degree"] for e in recorded] == [0.0, 0.0, 1.0, 1.0, 0.0]
        assert [e["data"]["commit"] for e in recorded] == uris
        # one webhook-id per delivery, unique, and the CloudEvent ids are unique too
        ids = [r.webhook_id for r in every.accepted()]
        assert len(set(ids)) == len(ids) == 8
        assert len({r.event["id"] for r in every.accepted()}) == 8
        assert every.accepted()[0].headers["content-type"].startswith("application/cloudevents")

        records = await _kafka_events(kafka_bootstrap, topic, 3)
        assert [dict(r.headers)["ce_type"].decode() for r in records] == [
            BECAME_GREEN,
            BECAME_BROKEN,
            BECAME_GREEN,
        ]
        assert [json.loads(r.value)["commit"] for r in records] == [uris[0], uris[2], uris[4]]
        assert {r.key for r in records} == {b"e2e/main"}
        # the same topic read by kcat, as a team with nothing but Debian's packages would
        seen = await kcat_read(kafka_bootstrap, topic, tansu=session_broker_is_tansu())
        assert [r.headers["ce_type"] for r in seen] == [BECAME_GREEN, BECAME_BROKEN, BECAME_GREEN]
        assert [r.headers["ce_id"] for r in seen] == [
            dict(r.headers)["ce_id"].decode() for r in records
        ]
        assert all(r.headers["ce_subject"] == "e2e/main" and r.key == "e2e/main" for r in seen)
        assert [json.loads(r.payload)["commit"] for r in seen] == [uris[0], uris[2], uris[4]]

        logged = [
            json.loads(r.getMessage()) for r in caplog.records if r.name == "stovepipe.hooks.log"
        ]
        assert [(line["type"], line["data"]["commit"]) for line in logged] == [
            (VERDICT_RECORDED, uris[2]),
            (VERDICT_RECORDED, uris[3]),
        ]
    finally:
        for receiver in (every, transitions, rotated):
            receiver.stop()


async def test_a_receiver_down_for_twenty_seconds_loses_nothing(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    receiver = WebhookReceiver(new_secret()).start()
    port = receiver.port
    receiver.stop()  # down: connections refused
    hooks = [webhook(tmp_path, "bot", receiver, events="all", max_attempts=100)]
    async with live_stack(
        tmp_path, kafka_bootstrap, migrated_pg_url, kafka=live_kafka, hooks=hooks
    ) as live:
        loop = asyncio.get_running_loop()
        down_since = loop.time()
        uris = [await step(live, change) for change in LINEAR[:3]]
        await until(
            lambda: _attempted(live),
            timeout_s=60,
            what="an attempt against the receiver while it is down",
        )
        await asyncio.sleep(max(0.0, 20 - (loop.time() - down_since)))  # the outage lasts 20 s
        receiver.port = port
        receiver.start()
        try:
            rows = await settled(live, "bot", 3 + 2, timeout_s=120)
        finally:
            receiver.stop()
    assert all_delivered(rows)
    assert any(r.attempts > 1 for r in rows), "nothing was ever retried: the outage was not seen"
    got = receiver.accepted()
    assert {r.event["id"] for r in got} == {r.event_id for r in rows}
    assert [r.event["data"]["commit"] for r in got if r.event["type"] == VERDICT_RECORDED] == uris


async def _attempted(live: Any) -> bool:
    found, _ = await live.store.list_hook_deliveries(page_size=50)
    return any(d.attempts >= 1 and d.last_error for d in found)


async def test_a_receiver_failing_for_ever_ends_failed_and_redeliver_delivers(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    receiver = WebhookReceiver(new_secret(), status=500).start()
    hooks = [webhook(tmp_path, "bot", receiver, events="transitions", max_attempts=3)]
    try:
        async with live_stack(
            tmp_path, kafka_bootstrap, migrated_pg_url, kafka=live_kafka, hooks=hooks
        ) as live:
            await step(live, LINEAR[0])
            rows = await settled(live, "bot", 1)
            assert [r.status for r in rows] == [HookDeliveryStatus.FAILED]
            assert rows[0].attempts == 3 and "HTTP 500" in rows[0].last_error
            api = ["--api", live.api_address]
            listed = await _cli("hooks", "list", "--state", "failed", *api)
            assert listed.returncode == 0, listed.stderr
            assert rows[0].id in listed.stdout and "failed" in listed.stdout
            shown = await _cli("hooks", "show", rows[0].id, *api)
            assert shown.returncode == 0 and BECAME_GREEN in shown.stdout, shown.stderr

            receiver.status = 204
            again = await _cli("hooks", "redeliver", "--failed", *api)
            assert again.returncode == 0, again.stderr
            await until(lambda: len(receiver.accepted()) == 1, timeout_s=60, what="the redelivery")
            rows = await settled(live, "bot", 1)
            assert [r.status for r in rows] == [HookDeliveryStatus.DELIVERED]
            malformed = await _cli("hooks", "redeliver", "no-slashes", *api)
            assert malformed.returncode == 4 and "INVALID_ARGUMENT" in malformed.stderr
            unknown = await _cli("hooks", "show", "e2e/main/0123/bot", *api)
            assert unknown.returncode == 4 and "NOT_FOUND" in unknown.stderr
    finally:
        receiver.stop()
    attempts = receiver.snapshot()
    assert len(attempts) == 4  # three failed attempts, then the redelivery
    assert len({r.webhook_id for r in attempts}) == 1, "a retry changed its webhook-id"
    assert len({r.event["id"] for r in attempts}) == 1


async def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [*CLI, *args], capture_output=True, text=True, timeout=120, check=False
    )


async def test_a_slow_subscriber_delays_neither_another_subscription_nor_the_verdicts(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    """The slow receiver holds every request until the test lets it go (it stands for one
    that takes 10 s, or much longer): everything else must be done meanwhile."""
    let_go = threading.Event()
    slow = WebhookReceiver(new_secret(), hold=let_go).start()
    fast = WebhookReceiver(new_secret()).start()
    hooks = [
        webhook(tmp_path, "slow", slow, events="all", timeout_seconds=120),
        webhook(tmp_path, "fast", fast, events="all"),
    ]
    try:
        async with live_stack(
            tmp_path, kafka_bootstrap, migrated_pg_url, kafka=live_kafka, hooks=hooks
        ) as live:
            uris = [await step(live, change) for change in LINEAR[:3]]
            fast_rows = await settled(live, "fast", 3 + 2)
            assert all_delivered(fast_rows)
            facts = [await live.store.get_fact("e2e/main", uri, "") for uri in uris]
            # every verdict is recorded and the fast subscriber has every event, while the
            # slow one has not finished its first request yet
            assert all(f is not None for f in facts)
            assert slow.waiting == 1 and not slow.snapshot()
            slow_rows = await _rows(live, "slow")
            assert [r.status for r in slow_rows] == [HookDeliveryStatus.PENDING] * 5
            let_go.set()
            slow_rows = await settled(live, "slow", 3 + 2)
            assert all_delivered(slow_rows)
    finally:
        let_go.set()
        slow.stop()
        fast.stop()
    # in event order for each subscription
    order = [r.event["id"] for r in fast.accepted()]
    assert [r.event["id"] for r in slow.accepted()] == order
    recorded = [
        r.event["data"]["commit"] for r in fast.accepted() if r.event["type"] == VERDICT_RECORDED
    ]
    assert recorded == uris


async def _rows(live: Any, hook: str) -> list[Any]:
    from harness.hooks import deliveries

    return await deliveries(live, hook)


def _dispatcher(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [*CLI, "worker", "hooks", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_kill_9_of_the_dispatcher_mid_delivery_still_delivers(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> None:
    let_go = threading.Event()
    receiver = WebhookReceiver(new_secret(), hold=let_go).start()
    # the cut attempt's claim lasts timeout_seconds + 15 s: then the restarted one sends it
    hooks = [webhook(tmp_path, "bot", receiver, events="transitions", timeout_seconds=20)]
    dispatcher: subprocess.Popen[bytes] | None = None
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
            log = tmp_path / "dispatcher.log"
            dispatcher = _dispatcher(config, log)
            await step(live, LINEAR[0])
            await until(
                lambda: receiver.waiting == 1,
                timeout_s=150,
                what="the first attempt, held by the receiver",
            )
            dispatcher.send_signal(signal.SIGKILL)
            dispatcher.wait(30)
            let_go.set()  # the answer goes to a dead process
            rows = await _rows(live, "bot")
            assert [r.status for r in rows] == [HookDeliveryStatus.PENDING]
            dispatcher = _dispatcher(config, log)
            rows = await settled(live, "bot", 1)
            assert all_delivered(rows), log.read_text()[-3000:]
    finally:
        let_go.set()
        receiver.stop()
        if dispatcher is not None and dispatcher.poll() is None:
            dispatcher.terminate()
            dispatcher.wait(60)
    got = receiver.snapshot()
    assert len(got) >= 2, "the delivery cut by kill -9 was not made again"
    assert len({r.webhook_id for r in got}) == 1 and len({r.event["id"] for r in got}) == 1
