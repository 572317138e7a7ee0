"""The poller, the push-webhook receiver and the console serve ``/metrics`` under
`stovepipe up` like the API and the workers: real processes, scraped over HTTP, with
their own series, their ports in up's table, and no commit or request id as a label."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from stovepipe.config import config_from_mapping
from stovepipe.runtime.embedded import embedded_stack
from stovepipe.runtime.processes import free_port
from stovepipe.runtime.sample_repo import STEPS, SampleRepo, build_targets
from stovepipe.testing import until
from stovepipe.webhooks.signatures import sign

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

QUEUE = "ops/main"
SECRET = "github-webhook-secret-for-the-metrics-test"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(address: str) -> Samples:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=120) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def test_poller_webhooks_and_console_serve_their_own_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GH_WEBHOOK_SECRET", SECRET)
    repo = SampleRepo(tmp_path / "repo").init()
    repo.commit(STEPS[0])
    hooks_listen = f"127.0.0.1:{free_port()}"
    config = config_from_mapping(
        {
            "api": {"listen": f"127.0.0.1:{free_port()}"},
            "workers": {"buildsignal_poll_interval_seconds": 0.2},
            "webhooks": {"listen": hooks_listen, "github": {"secret_env": "GH_WEBHOOK_SECRET"}},
            "queues": [
                {
                    "name": QUEUE,
                    "source": {"repository": str(repo.path), "ref": "main"},
                    "build": {"targets": build_targets()},
                    "poll": {"every": 1},
                }
            ],
        },
        source="test",
    )
    async with embedded_stack(config, tmp_path / "state", Console(quiet=True)) as stack:
        metrics: dict[str, str] = {
            child.spec.name: child.spec.metrics
            for child in stack.supervisor.children
            if child.spec.metrics
        }
        assert {"poller", "webhooks", "console"} <= set(metrics), metrics
        out = io.StringIO()
        Console(file=out, width=400).print(stack.table())
        for name in ("poller", "webhooks", "console"):
            rows = [line for line in out.getvalue().splitlines() if f" {name} " in line]
            assert any(f"http://{metrics[name]}/metrics" in row for row in rows), name

        # poller: it polls every second, holds the lease, and ingests a head that moved
        async def polled() -> Samples | None:
            samples = await asyncio.to_thread(_scrape, metrics["poller"])
            ok = _value(samples, "stovepipe_poller_resolve_head_total", queue=QUEUE, result="ok")
            return samples if ok >= 2 else None

        samples = await until(polled, timeout_s=120, what="two successful polls")
        assert _value(samples, "stovepipe_poller_ticks_total", queue=QUEUE, outcome="polled") >= 2
        assert _value(samples, "stovepipe_poller_lease_held", queue=QUEUE) == 1.0
        assert _value(samples, "stovepipe_poller_resolve_head_seconds_count", queue=QUEUE) >= 2
        assert _value(samples, "stovepipe_poller_backoff_seconds", queue=QUEUE) == 0.0
        repo.commit(STEPS[1])

        async def ingested() -> bool:
            samples = await asyncio.to_thread(_scrape, metrics["poller"])
            return (
                _value(samples, "stovepipe_poller_ingests_total", queue=QUEUE, trigger="poll")
                >= 2  # the start-up head and the one just committed
            )

        await until(ingested, timeout_s=120, what="the poller ingesting the new head")

        # webhooks: one delivery of each kind, counted by provider, outcome and status
        base = f"http://{hooks_listen}/hooks"
        ping = json.dumps({"zen": "Keep it logically awesome."}).encode()
        said = await asyncio.gather(
            asyncio.to_thread(
                _post,
                f"{base}/github",
                ping,
                {"X-GitHub-Event": "ping", "Content-Type": "application/json"},
            ),
            asyncio.to_thread(
                _post,
                f"{base}/github",
                ping,
                {
                    "X-GitHub-Event": "ping",
                    "Content-Type": "application/json",
                    **sign("github", SECRET, ping),
                },
            ),
            asyncio.to_thread(_post, f"{base}/made-up-host-{free_port()}", ping, {}),
        )
        assert list(said) == [401, 202, 404]
        samples = await asyncio.to_thread(_scrape, metrics["webhooks"])
        deliveries = "stovepipe_webhook_deliveries_total"
        github = {"provider": "github"}
        assert _value(samples, deliveries, **github, outcome="bad_signature", status="401") == 1
        assert _value(samples, deliveries, **github, outcome="ignored", status="202") == 1
        unknown = {"provider": "unknown", "outcome": "no_endpoint", "status": "404"}
        assert _value(samples, deliveries, **unknown) == 1
        assert _value(samples, "stovepipe_webhook_delivery_seconds_count", provider="github") == 2
        assert not any("made-up-host" in str(labels) for _, labels in samples)

        # console: pages by route and status, whatever Queue or commit they show
        grid = f"{stack.console_url}/queues/{QUEUE}"
        commit = f"{stack.console_url}/commit?" + urllib.parse.urlencode(
            {"queue": QUEUE, "uri": "0" * 40}  # never ingested: "not recorded"
        )
        bad = f"{stack.console_url}/commit?" + urllib.parse.urlencode(
            {"queue": QUEUE, "uri": "neither a uri nor a sha"}
        )
        codes = await asyncio.gather(
            asyncio.to_thread(_get, grid),
            asyncio.to_thread(_get, grid),
            asyncio.to_thread(_get, stack.console_url + "/"),
            asyncio.to_thread(_get, commit),
            asyncio.to_thread(_get, bad),
        )
        assert list(codes) == [200, 200, 200, 200, 400]
        samples = await asyncio.to_thread(_scrape, metrics["console"])
        requests = "stovepipe_console_requests_total"
        assert _value(samples, requests, route="/queues", status="200") >= 2
        assert _value(samples, requests, route="/", status="200") >= 1
        assert _value(samples, requests, route="/commit", status="200") >= 1
        assert _value(samples, requests, route="/commit", status="400") == 1
        assert _value(samples, "stovepipe_console_request_seconds_count", route="/queues") >= 2
        routes = {dict(labels).get("route") for name, labels in samples if name == requests}
        assert routes <= {"/", "/queues", "/commit", "/healthz", "/events", "/static", "other"}
        for name in ("poller", "webhooks", "console"):
            scraped: Any = await asyncio.to_thread(_scrape, metrics[name])
            assert not any("request/" in str(labels) for _, labels in scraped), name
