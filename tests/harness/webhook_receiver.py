"""A real HTTP webhook receiver on loopback that verifies Standard Webhooks signatures.

Used by the hooks tests and the delivery benchmark as a downstream team's
endpoint would be: it checks every request's signature with the
``standardwebhooks`` library, records what arrived (and when, by the wall
clock, to compare with recorded verdicts), and can be told to answer slowly,
with a given status, or to stop listening and come back on the same port.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Received:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: datetime
    status: int

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class WebhookReceiver:
    """``secret`` in ``whsec_<base64>`` form; ``status``/``delay_s``/``retry_after`` say how
    it answers."""

    secret: str
    status: int = 204
    delay_s: float = 0.0
    retry_after: str | None = None
    hold: threading.Event | None = None
    """When set, every request waits for it (up to ``hold_s``) before answering."""
    hold_s: float = 300.0
    fail_every: int = 0
    """When positive, every ``fail_every``-th request answers 503 instead of ``status``
    (a receiver that sometimes fails, for the fault suite)."""
    received: list[Received] = field(default_factory=list)
    waiting: int = 0
    """Requests held right now (``hold`` not yet set)."""
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    """The most requests it was answering at once (a lane sends one at a time)."""
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with receiver._lock:
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                try:
                    status = self._answer()
                finally:  # before answering: the sender may send the next one right after
                    with receiver._lock:
                        receiver.in_flight -= 1
                self.send_response(status)
                if receiver.retry_after is not None:
                    self.send_header("Retry-After", receiver.retry_after)
                self.send_header("content-length", "0")
                self.end_headers()

            def _answer(self) -> int:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                arrived = datetime.now(UTC)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                hold = receiver.hold  # a test may lift it at any moment
                if hold is not None:
                    with receiver._lock:
                        receiver.waiting += 1
                    hold.wait(receiver.hold_s)
                    with receiver._lock:
                        receiver.waiting -= 1
                with receiver._lock:
                    receiver.requests += 1
                    flaky = receiver.fail_every > 0 and receiver.requests % receiver.fail_every == 0
                status = (503 if flaky else receiver.status) if verified else 401
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            headers.get("webhook-id", ""),
                            headers,
                            body,
                            verified,
                            arrived,
                            status,
                        )
                    )
                return status

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused until ``start`` again, on the same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self) -> list[Received]:
        """Requests that were verified and answered 2xx."""
        with self._lock:
            return [r for r in self.received if r.verified and 200 <= r.status < 300]

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)
