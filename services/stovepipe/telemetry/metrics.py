"""The Prometheus metric families every Stovepipe process may export, and their server.

All families live in the default registry and are created at import, so a
process exports each of them (with no samples until it does that work) and a
dashboard finds the same names everywhere. Labels are bounded by configuration:
stage and topic names come from the registry, ``queue`` from ``stovepipe.yaml``,
``partition`` from ``kafka.partitions``, ``method`` from the API's service
definition. No commit, request or build id is ever a label value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_VERDICT_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200)

STAGE_RECORDS = Counter(
    "stovepipe_stage_records",
    "Records a stage consumed, by what became of them: handled, failed (the handler "
    "raised), retried (sent to a delay tier), dead_lettered, parked (poison), redelivered.",
    ["stage", "topic", "outcome"],
)
STAGE_HANDLER_SECONDS = Histogram(
    "stovepipe_stage_handler_seconds",
    "Time a stage's handler took per record, successful or not.",
    ["stage", "topic"],
    buckets=_LATENCY_BUCKETS,
)
DELAY_TIER_LAG_SECONDS = Histogram(
    "stovepipe_delay_tier_lag_seconds",
    "How late a delayed record was forwarded after it became due.",
    ["tier"],
    buckets=_LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "stovepipe_consumer_lag_records",
    "Records behind the end of a partition, seen by the consumer after its last record.",
    ["topic", "partition"],
)
QUEUE_SLOTS_IN_USE = Gauge(
    "stovepipe_queue_slots_in_use", "Builds holding one of the Queue's slots.", ["queue"]
)
QUEUE_SLOTS_MAX = Gauge("stovepipe_queue_slots_max", "The Queue's max_concurrent.", ["queue"])
QUEUE_LAST_GREEN_AGE_SECONDS = Gauge(
    "stovepipe_queue_last_green_age_seconds",
    "Seconds since the Queue's last green commit was reported (since its first "
    "report when nothing was ever green).",
    ["queue"],
)
QUEUE_COMMITS_SINCE_LAST_GREEN = Gauge(
    "stovepipe_queue_commits_since_last_green",
    "Heads reported after the Queue's last green one.",
    ["queue"],
)
QUEUE_STALE = Gauge(
    "stovepipe_queue_stale", "1 while the Queue breaks its staleness objective.", ["queue"]
)
HOOK_DELIVERIES = Gauge(
    "stovepipe_hook_deliveries",
    "Hook deliveries recorded in storage, by Queue and state (pending, delivered, failed).",
    ["queue", "state"],
)
INGEST_TO_VERDICT_SECONDS = Histogram(
    "stovepipe_ingest_to_verdict_seconds",
    "From a head being reported to its verdict being recorded, per scope (project empty: "
    "the whole repository).",
    ["queue", "project"],
    buckets=_VERDICT_BUCKETS,
)
VERDICTS = Counter(
    "stovepipe_verdicts",
    "Verdicts recorded, per scope (project empty: the whole repository), by result "
    "(green, red) and origin (build, inherited, fail_closed).",
    ["queue", "project", "result", "origin"],
)
API_REQUESTS = Counter(
    "stovepipe_api_requests", "API calls by method and gRPC status.", ["method", "code"]
)
API_REQUEST_SECONDS = Histogram(
    "stovepipe_api_request_seconds",
    "API call latency by method (a stream's whole life for WatchEvents).",
    ["method"],
    buckets=_LATENCY_BUCKETS,
)

POLLER_TICKS = Counter(
    "stovepipe_poller_ticks",
    "Ticks of a polled Queue, by what this replica did: polled, not_held (another "
    "replica holds the Queue, or its lease is about to run out), backing_off.",
    ["queue", "outcome"],
)
POLLER_RESOLVES = Counter(
    "stovepipe_poller_resolve_head",
    "ResolveHead calls of the poller, by result (ok, error).",
    ["queue", "result"],
)
POLLER_RESOLVE_SECONDS = Histogram(
    "stovepipe_poller_resolve_head_seconds",
    "ResolveHead latency of the poller, successful or not.",
    ["queue"],
    buckets=_LATENCY_BUCKETS,
)
POLLER_INGESTS = Counter(
    "stovepipe_poller_ingests",
    "Heads the poller ingested because they moved, by trigger (poll, schedule).",
    ["queue", "trigger"],
)
POLLER_LEASE_HELD = Gauge(
    "stovepipe_poller_lease_held", "1 while this replica holds the Queue's poll lease.", ["queue"]
)
POLLER_BACKOFF_SECONDS = Gauge(
    "stovepipe_poller_backoff_seconds",
    "The backoff the Queue is in after consecutive poll failures (0 when healthy).",
    ["queue"],
)
POLLER_CONSECUTIVE_FAILURES = Gauge(
    "stovepipe_poller_consecutive_failures",
    "Poll failures of the Queue in a row (0 after a success).",
    ["queue"],
)
WEBHOOK_DELIVERIES = Counter(
    "stovepipe_webhook_deliveries",
    "Push deliveries received, by provider (github, gitlab, gitea; unknown for any "
    "other path), outcome (ingested, ignored, bad_signature, malformed, too_large, "
    "no_endpoint, failed) and HTTP status.",
    ["provider", "outcome", "status"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "stovepipe_webhook_delivery_seconds",
    "Time to answer a push delivery (ingest included), by provider.",
    ["provider"],
    buckets=_LATENCY_BUCKETS,
)
CONSOLE_REQUESTS = Counter(
    "stovepipe_console_requests",
    "Console HTTP requests by route (the page, not its query) and status.",
    ["route", "status"],
)
CONSOLE_REQUEST_SECONDS = Histogram(
    "stovepipe_console_request_seconds",
    "Console server time by route (until the response starts; an event stream's "
    "headers, not its life).",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)


@dataclass
class MetricsServer:
    """The ``/metrics`` HTTP server of this process, on a thread of its own."""

    server: WSGIServer
    thread: Thread

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else host
        return f"{text}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(host: str, port: int) -> MetricsServer:
    """Serve the default registry on ``http://host:port/metrics`` (port 0: any free one).

    A thread rather than the event loop: a scrape must succeed even while the
    loop is busy, which is exactly when someone looks.
    """
    server, thread = start_http_server(port, addr=host)
    metrics = MetricsServer(server, thread)
    log.info("metrics on http://%s/metrics", metrics.address)
    return metrics
