"""The webhook target against a real loopback receiver: outcomes, signatures, rotation."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from harness.hooks import new_secret, secret_file
from harness.webhook_receiver import WebhookReceiver
from stovepipe.config.hooks import HookConfig
from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.extensions.hooks.client import Outcome
from stovepipe.extensions.hooks.reference.webhook import post, retry_after
from stovepipe.hooks.events import verdict_events

EVENT = verdict_events(
    ValidationFact(queue="q/main", uri="git+r#main@" + "a" * 40, project="", degree=0.0,
                   request_id="request/q/main/1", origin=FactOrigin.BUILD,
                   created_at=datetime.now(UTC)),
    None, took_bookmark=True, last_green_uri="", strategy="full", build_link="", now=datetime.now(UTC),
)[0]  # fmt: skip


def hook(tmp: Path, receiver: WebhookReceiver, **extra: Any) -> HookConfig:
    return HookConfig(
        name="bot",
        kind="webhook",
        url=receiver.url,
        secret_file=str(secret_file(tmp, f"k{len(list(tmp.iterdir()))}", receiver.secret)),
        **extra,
    )


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient() as http:
        yield http


@pytest.mark.parametrize(
    ("status", "header", "outcome", "wait"),
    [
        (204, None, Outcome.DELIVERED, 0.0),
        (200, None, Outcome.DELIVERED, 0.0),
        (500, "7", Outcome.RETRY, 7.0),
        (503, None, Outcome.RETRY, 0.0),
        (429, "2", Outcome.RETRY, 2.0),
        (408, None, Outcome.RETRY, 0.0),
        (410, None, Outcome.GONE, 0.0),
        (400, None, Outcome.FAILED, 0.0),
        (404, None, Outcome.FAILED, 0.0),
    ],
)
async def test_the_receivers_answer_decides_the_outcome(
    tmp_path: Path, client: httpx.AsyncClient, status: int, header: str | None,
    outcome: Outcome, wait: float,
) -> None:  # fmt: skip
    receiver = WebhookReceiver(new_secret(), status=status, retry_after=header).start()
    try:
        result = await post(client, hook(tmp_path, receiver), EVENT, "msg_1")
    finally:
        receiver.stop()
    assert (result.outcome, result.retry_after_s) == (outcome, wait)
    assert f"HTTP {status}" in result.detail
    assert [r.verified for r in receiver.snapshot()] == [True]


async def test_a_receiver_that_is_down_or_too_slow_is_retried(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    let_go = threading.Event()
    slow = WebhookReceiver(new_secret(), hold=let_go).start()
    try:
        result = await post(client, hook(tmp_path, slow, timeout_seconds=0.5), EVENT, "msg_1")
        assert result.outcome is Outcome.RETRY and "timed out" in result.detail
    finally:
        let_go.set()
        slow.stop()
    down = await post(client, hook(tmp_path, slow), EVENT, "msg_1")  # nothing listens now
    assert down.outcome is Outcome.RETRY and "ConnectError" in down.detail


async def test_during_a_rotation_both_keys_verify_and_the_id_is_the_delivery_id(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    old, new = new_secret(), new_secret()
    receiver = WebhookReceiver(old).start()
    try:
        config = HookConfig(
            name="bot", kind="webhook", url=receiver.url,
            secret_file=str(secret_file(tmp_path, "new", new)),
            previous_secret_file=str(secret_file(tmp_path, "old", old)),
        )  # fmt: skip
        for _ in range(2):
            assert (await post(client, config, EVENT, "msg_same")).outcome is Outcome.DELIVERED
    finally:
        receiver.stop()
    got = receiver.snapshot()
    assert [r.verified for r in got] == [True, True]
    assert {r.webhook_id for r in got} == {"msg_same"}
    assert len(got[0].headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(got[0].body, got[0].headers)  # the new key verifies too


async def test_an_unreadable_key_is_retried_and_never_shown(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    receiver = WebhookReceiver(new_secret()).start()
    try:
        missing = HookConfig(name="bot", kind="webhook", url=receiver.url,
                             secret_file=str(tmp_path / "absent"))  # fmt: skip
        result = await post(client, missing, EVENT, "msg_1")
        assert result.outcome is Outcome.RETRY and "absent" in result.detail
        bad = HookConfig(name="bot", kind="webhook", url=receiver.url,
                         secret_file=str(secret_file(tmp_path, "bad", "not-base64!!")))  # fmt: skip
        result = await post(client, bad, EVENT, "msg_1")
        assert result.outcome is Outcome.RETRY and "not-base64" not in result.detail
    finally:
        receiver.stop()
    assert receiver.snapshot() == []


def test_retry_after_reads_seconds_and_dates_and_is_capped() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after("30", now) == 30.0
    assert retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now) == 60.0
    assert retry_after("999999", now) == 3600.0
    assert retry_after("soon", now) == 0.0 and retry_after(None, now) == 0.0
