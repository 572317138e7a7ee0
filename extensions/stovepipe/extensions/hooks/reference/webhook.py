"""The ``webhook`` target: an HTTP POST of the CloudEvent, signed per Standard Webhooks.

The body is the CloudEvents JSON structured form (``application/cloudevents+json``).
``webhook-id`` is the delivery id the dispatcher gives, the same on every
attempt of one (event, subscription); ``webhook-timestamp`` is the time of this
attempt; ``webhook-signature`` holds one ``v1,<base64>`` per key — two during
a rotation (``previous_secret_env``/``previous_secret_file``), so a receiver that
holds either key verifies. The keys are read from where the configuration
points at each attempt, so a rotated file takes effect without a restart.

Outcomes: 2xx delivered; 410 gone; 408, 429 and 5xx, timeouts and connection
errors retried (honouring ``Retry-After`` in seconds or as an HTTP date); any
other status failed. Response bodies are never read into logs or details.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

import httpx
from cloudevents.core.bindings import http as ce_http
from standardwebhooks import Webhook

from stovepipe.config import resolve_secret
from stovepipe.config.errors import SecretUnavailable
from stovepipe.config.hooks import HookConfig
from stovepipe.extensions.hooks.client import DeliverResult, Outcome
from stovepipe.hooks.events import to_cloudevent
from stovepipe.v1 import topics_pb2

MAX_RETRY_AFTER_S = 3600.0
USER_AGENT = "stovepipe-hooks/1"


def retry_after(value: str | None, now: datetime) -> float:
    """Seconds a ``Retry-After`` header asks for (0 when absent or unreadable), capped."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_S)


def signing_keys(hook: HookConfig) -> list[Webhook]:
    """The current key, then the previous one during a rotation; ``SecretUnavailable`` or
    ``ValueError`` (not ``whsec_<base64>``) naming the reference, never the value."""
    refs = [hook.secret_ref()]
    if (previous := hook.previous_secret_ref()) is not None:
        refs.append(previous)
    keys = []
    for ref in refs:
        secret = resolve_secret(ref)
        try:
            keys.append(Webhook(secret))
        except Exception:
            raise ValueError(f"{ref.owner}: the secret is not in whsec_<base64> form") from None
    return keys


async def post(
    client: httpx.AsyncClient, hook: HookConfig, event: topics_pb2.HookEvent, delivery_id: str
) -> DeliverResult:
    """One signed POST of ``event`` to ``hook.url``."""
    assert hook.url is not None
    try:
        keys = signing_keys(hook)
    except (SecretUnavailable, ValueError) as exc:
        return DeliverResult(Outcome.RETRY, f"signing key unavailable: {exc}")
    message = ce_http.to_structured_event(to_cloudevent(event))
    body = message.body.decode()
    now = datetime.now(UTC)
    headers = {
        **message.headers,
        "user-agent": USER_AGENT,
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(key.sign(delivery_id, now, body) for key in keys),
    }
    try:
        response = await client.post(
            hook.url, content=message.body, headers=headers, timeout=hook.timeout_seconds
        )
    except httpx.TimeoutException:
        return DeliverResult(Outcome.RETRY, f"timed out after {hook.timeout_seconds:g}s")
    except httpx.HTTPError as exc:
        return DeliverResult(Outcome.RETRY, f"{type(exc).__name__} reaching the receiver")
    status = response.status_code
    if 200 <= status < 300:
        return DeliverResult(Outcome.DELIVERED, f"HTTP {status}")
    if status == 410:
        return DeliverResult(Outcome.GONE, "HTTP 410 Gone")
    if status in (408, 429) or status >= 500:
        wait = retry_after(response.headers.get("retry-after"), datetime.now(UTC))
        return DeliverResult(Outcome.RETRY, f"HTTP {status}", wait)
    return DeliverResult(Outcome.FAILED, f"HTTP {status}")
