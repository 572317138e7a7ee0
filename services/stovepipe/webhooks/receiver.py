"""The HTTP receiver: ``POST /hooks/<host>`` for each configured code host.

Answers, in the order they are decided:

- 404: no such host endpoint (the host is not configured);
- 413: the body is larger than ``webhooks.max_body_bytes`` (refused before it
  is read past the limit);
- 401: the signature (or GitLab token) is missing or wrong; one log line names
  the host and the peer, never the secret or the header's value;
- 400: a signed body that is not the JSON push it claims to be;
- 202 ``ignored``: not a push, a tag or a branch deletion, or no Queue follows
  that repository and branch;
- 202 ``ingested``: every matching Queue was ingested with trigger ``push``
  (the head is resolved through SourceControl; the payload's sha is only
  recorded as a hint), with the Request ids in the body;
- 503: ingesting failed or took longer than ``ingest_timeout_seconds``; the
  code host's redelivery (or the next push) tries again, and the poller, if
  the Queue has one, catches up anyway.

``GET /healthz`` answers 200 once the receiver serves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from stovepipe.config import QueueConfig
from stovepipe.config.webhooks import CodeHost, WebhooksConfig
from stovepipe.domain import TriggerKind
from stovepipe.domain.trigger import PUSH_DELIVERY, PUSH_HOST, PUSH_SHA_HINT
from stovepipe.redaction import redact
from stovepipe.telemetry.metrics import WEBHOOK_DELIVERIES, WEBHOOK_DELIVERY_SECONDS
from stovepipe.webhooks.matching import queues_for
from stovepipe.webhooks.payloads import MalformedPayload, Push, read_push
from stovepipe.webhooks.signatures import verify

log = logging.getLogger(__name__)

Ingest = Callable[[str, str, Mapping[str, str]], Awaitable[str]]
"""Ingest a Queue with a trigger and its details; returns the Request id."""


class WebhookReceiver:
    """Builds the aiohttp application; ``secrets`` maps each configured host to its secret."""

    def __init__(
        self,
        config: WebhooksConfig,
        secrets: Mapping[CodeHost, str],
        queues: Sequence[QueueConfig],
        ingest: Ingest,
    ) -> None:
        self._config = config
        self._secrets = dict(secrets)
        self._queues = list(queues)
        self._ingest = ingest
        self.deliveries = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._config.max_body_bytes)
        app.router.add_post("/hooks/{host}", self._delivery)
        app.router.add_get("/healthz", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "serving"})

    async def _delivery(self, request: web.Request) -> web.Response:
        """Answer one delivery and count it: provider (a configured host, else
        ``unknown``: the path is the sender's choice), outcome and status."""
        host_name = request.match_info["host"]
        provider = host_name if host_name in self._secrets else "unknown"
        started = time.perf_counter()
        outcome, response = await self._answer_delivery(request, host_name)
        WEBHOOK_DELIVERY_SECONDS.labels(provider).observe(time.perf_counter() - started)
        WEBHOOK_DELIVERIES.labels(provider, outcome, str(response.status)).inc()
        return response

    async def _answer_delivery(
        self, request: web.Request, host_name: str
    ) -> tuple[str, web.Response]:
        secret = self._secrets.get(host_name)  # type: ignore[call-overload]
        if secret is None:
            return "no_endpoint", _answer(404, f"no webhook endpoint for {host_name!r}")
        host: CodeHost = host_name  # type: ignore[assignment]
        limit = self._config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return "too_large", _answer(413, f"body larger than {limit} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return "too_large", _answer(413, f"body larger than {limit} bytes")
        if not verify(host, secret, request.headers, body):
            log.warning(
                "webhook from %s (%s): missing or bad signature; refused",
                host,
                request.remote or "unknown peer",
            )
            return "bad_signature", _answer(401, "missing or bad signature")
        self.deliveries += 1
        try:
            push = read_push(host, request.headers, body)
        except MalformedPayload as exc:
            return "malformed", _answer(400, str(exc))
        if push is None:
            return "ignored", _answer(202, "ignored: not a branch push", status="ignored")
        matched = queues_for(push, self._queues)
        if not matched:
            log.info(
                "webhook from %s: no queue follows %s %s", host, push.repository_names[0], push.ref
            )
            return "ignored", _answer(
                202, "ignored: no queue follows this repository and branch", status="ignored"
            )
        try:
            requests = await asyncio.wait_for(
                self._ingest_all(host, push, matched), self._config.ingest_timeout_seconds
            )
        except Exception as exc:
            log.warning(
                "webhook from %s: ingest failed: %s", host, redact(f"{type(exc).__name__}: {exc}")
            )
            return "failed", _answer(503, "could not ingest now; deliver again later")
        answer = web.json_response({"status": "ingested", "requests": requests}, status=202)
        return "ingested", answer

    async def _ingest_all(
        self, host: CodeHost, push: Push, queues: Sequence[QueueConfig]
    ) -> dict[str, str]:
        details = {PUSH_HOST: host, PUSH_SHA_HINT: push.sha_hint[:64]}
        if push.delivery:
            details[PUSH_DELIVERY] = push.delivery
        ids = await asyncio.gather(
            *(self._ingest(q.name, TriggerKind.PUSH, details) for q in queues)
        )
        return {q.name: rid for q, rid in zip(queues, ids, strict=True)}


def _answer(code: int, message: str, *, status: str = "error") -> web.Response:
    body: dict[str, Any] = {"status": status, "message": message}
    return web.json_response(body, status=code)
