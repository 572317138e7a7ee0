"""Commit made → Request created: through the built-in poller (``every: 1``), through a
push webhook, and (the reference, timed in the same run) through an Ingest call.

Runs the live pipeline in one process (real Tansu broker, PostgreSQL 15 unless
``--sqlite``, real git and local-runner extensions over gRPC, an instant build
target), plus a ``Poller`` and the webhook receiver on loopback HTTP. Each
sample makes a new commit on the Queue's branch, starts the clock, and stops it
when the Request for that commit is readable in storage:

- poller: nothing is called; the next tick (1 s period, jitter up to 0.1 s)
  notices the head;
- webhook: a signed GitHub push delivery is POSTed (the receiver resolves the
  head through SourceControl and ingests);
- reference: ``Ingest`` over gRPC, as ``stovepipe ingest`` would.

    .venv/bin/python benchmarks/ingest_latency.py [--samples 20] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from aiohttp import web

from stovepipe.config import QueueConfig, config_from_mapping
from stovepipe.embedded import EmbeddedBroker
from stovepipe.runtime.extension_registry import ExtensionRegistry
from stovepipe.runtime.poller import Poller, PollerTuning
from stovepipe.runtime.processes import free_port
from stovepipe.runtime.wiring import open_extensions
from stovepipe.stages import HeadIngester
from stovepipe.stages.ports import queue_source, utc_now
from stovepipe.storage.poll_leases import PollLeases
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.webhooks.receiver import WebhookReceiver
from stovepipe.webhooks.signatures import sign

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the shared harness: tests/harness

from harness.live import QUEUE, Live, live_stack  # noqa: E402
from harness.postgres import PostgresCluster  # noqa: E402

SECRET = "bench-secret"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def request_for(live: Live, sha: str) -> None:
    while True:
        for request in await live.store.list_requests(QUEUE, limit=5):
            if request.uri.endswith(sha):
                return
        await asyncio.sleep(0.002)


def push_body(live: Live, sha: str) -> bytes:
    owner, name = live.repo.path.parent.name, live.repo.path.name
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "after": sha,
            "repository": {
                "full_name": f"{owner}/{name}",
                "clone_url": f"https://github.com/{owner}/{name}.git",
            },
        }
    ).encode()


def post(url: str, body: bytes) -> int:
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    headers.update(sign("github", SECRET, body))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return int(answer.status)


async def sample(live: Live, n: int, way: str, url: str) -> float:
    sha = live.repo.commit({"bench.txt": f"{way} {n}\n"}, f"{way} {n}")
    start = time.perf_counter()
    if way == "webhook":
        status = await asyncio.to_thread(post, url, push_body(live, sha))
        assert status == 202, status
    elif way == "ingest":
        await live.stub.Ingest(pb.IngestRequest(queue=QUEUE, trigger="manual"))
    await request_for(live, sha)
    return time.perf_counter() - start


async def main(samples: int, use_sqlite: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="stovepipe-ingest-bench-"))
    cluster = None
    if use_sqlite:
        database_url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    else:
        cluster = PostgresCluster().start()
        database_url = cluster.create_database("bench")
    broker = EmbeddedBroker()
    await broker.start()
    figures: dict[str, list[float]] = {"ingest": [], "webhook": [], "poller": []}
    try:
        targets = [{"name": "instant", "command": "true", "timeout_seconds": 60}]
        async with (
            live_stack(tmp, broker.bootstrap_servers, database_url, targets=targets) as live,
            open_extensions(live.config) as extensions,
        ):
            live.repo.commit({"README.md": "bench\n"}, "root")
            parts_config = live.config
            queue: QueueConfig = config_from_mapping(
                {"queues": [{**_queue_dict(live), "poll": {"every": 1}}]}
            ).queues[0]
            ingester = HeadIngester(live.store, live.config, extensions, live.bus, utc_now)
            listen = f"127.0.0.1:{free_port()}"
            hooks = config_from_mapping(
                {
                    "webhooks": {
                        "listen": listen,
                        "ingest_timeout_seconds": 30,
                        "github": {"secret_env": "UNUSED"},
                    }
                }
            ).webhooks
            assert hooks is not None

            async def hook_ingest(name: str, trigger: str, details: object) -> str:
                result = await ingester.ingest(name, trigger, details=details)  # type: ignore[arg-type]
                return result.request.id

            receiver = WebhookReceiver(hooks, {"github": SECRET}, parts_config.queues, hook_ingest)
            runner = web.AppRunner(receiver.app(), access_log=None)
            await runner.setup()
            host, port = listen.rsplit(":", 1)
            await web.TCPSite(runner, host, int(port)).start()
            url = f"http://{listen}/hooks/github"
            try:
                for n in range(samples):
                    figures["ingest"].append(await sample(live, n, "ingest", url))
                    figures["webhook"].append(await sample(live, n, "webhook", url))
                poller = _poller(live, queue, ingester, extensions)
                stop = asyncio.Event()

                async def started() -> None:
                    return None

                polling = asyncio.create_task(poller.run(stop, started))
                await asyncio.sleep(2)
                for n in range(samples):
                    figures["poller"].append(await sample(live, n, "poller", url))
                stop.set()
                await polling
            finally:
                await runner.cleanup()
    finally:
        await broker.stop()
        if cluster is not None:
            cluster.destroy()
    reference = pct(figures["ingest"], 0.5)
    print(
        f"storage            {'SQLite' if use_sqlite else 'PostgreSQL 15'}; broker Tansu (memory)"
    )
    print(f"samples            {samples} per way; commit made → Request readable in storage")
    for way in ("ingest", "webhook", "poller"):
        values = figures[way]
        p50 = pct(values, 0.5)
        print(
            f"{way:<18} p50 {p50 * 1000:7.0f} ms   p99 {pct(values, 0.99) * 1000:7.0f} ms   "
            f"mean {statistics.mean(values) * 1000:6.0f} ms   ratio to Ingest p50 {p50 / reference:6.1f}"
        )


def _queue_dict(live: Live) -> dict[str, object]:
    q = live.config.queue(QUEUE)
    return {
        "name": q.name,
        "source": {"repository": q.source.repository, "ref": q.source.ref},
        "build": {"targets": [t.model_dump() for t in q.build.targets]},
    }


def _poller(
    live: Live, queue: QueueConfig, ingester: HeadIngester, extensions: ExtensionRegistry
) -> Poller:
    async def resolve(q: QueueConfig, timeout_s: float) -> str:
        return await extensions.source_control(live.config.queue(q.name)).resolve_head(
            queue_source(q), timeout_s=timeout_s
        )

    async def ingest(q: QueueConfig, head: str, trigger: str) -> None:
        await ingester.ingest(q.name, trigger, resolved_uri=head)

    return Poller(
        [queue], PollLeases(live.store.engine), resolve, ingest, holder="bench",
        tuning=PollerTuning(),
    )  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.samples, args.sqlite))
