"""Hook delivery latency and isolation, against a bare signed-less HTTP POST round trip.

Runs the real hooks path in one process: the embedded Tansu broker, SQLite, the
hooks dispatcher (intake + lanes), the reference HooksService server over gRPC
and a loopback webhook receiver that verifies every Standard Webhooks
signature. Each verdict is recorded as the record stage records it (the fact
is stored, then its events are published to ``stovepipe.hook``); latency is
"fact stored" → "request arrived at the receiver", by the wall clock of this
one process. The reference is a plain ``httpx`` POST round trip to the same
receiver, timed in the same run: the ratio is what the hook path costs on top
of the HTTP request it ends in.

Isolation: the same run again with a second subscription whose receiver takes
``--slow-s`` seconds per request; the fast subscription's latency and the time
to record the verdicts are compared with the run without it. The two runs are
interleaved in halves (alone, beside, alone, beside) so that load drifting on a
shared machine does not fall on one side only.

Verdicts are paced (``--interval-s``, default 0.25 s) as builds pace them; with
``--interval-s 0`` the 200 arrive at once and one lane's in-order delivery
shows up as queueing.

    .venv/bin/python benchmarks/hook_delivery.py [--events 200] [--slow-s 10] [--interval-s 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from stovepipe.config import config_from_mapping
from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.embedded import EmbeddedBroker
from stovepipe.extensions.hooks.reference import serve as serve_hooks
from stovepipe.hooks.events import verdict_events
from stovepipe.messaging import HOOK, Bus, ensure_topics
from stovepipe.runtime.hooks_worker import run_hooks_dispatcher
from stovepipe.runtime.registry import all_topics
from stovepipe.runtime.wiring import kafka_settings
from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import upgrade_async

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the shared harness: tests/harness

from harness.webhook_receiver import WebhookReceiver  # noqa: E402

QUEUE = "bench/main"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def secret() -> str:
    import base64
    import secrets

    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def write_secret(tmp: Path, name: str, value: str) -> str:
    path = tmp / f"{name}.whsec"
    path.write_text(value)
    path.chmod(0o600)
    return str(path)


async def run(
    tmp: Path, bootstrap: str, events: int, slow_s: float | None, interval_s: float = 0.0
) -> tuple[list[float], float]:
    """Latencies (s) of the fast subscription, and seconds to record every verdict."""
    fast = WebhookReceiver(secret()).start()
    slow = WebhookReceiver(secret(), delay_s=slow_s or 0.0).start() if slow_s else None
    hooks: list[dict[str, Any]] = [
        {"name": "fast", "kind": "webhook", "url": fast.url, "events": "all",
         "secret_file": write_secret(tmp, "fast", fast.secret)},
    ]  # fmt: skip
    if slow is not None:
        hooks.append(
            {"name": "slow", "kind": "webhook", "url": slow.url, "events": "all",
             "timeout_seconds": (slow_s or 0) + 10, "secret_file": write_secret(tmp, "slow", slow.secret)}
        )  # fmt: skip
    db = tmp / f"bench-{uuid.uuid4().hex[:6]}.db"
    url = f"sqlite+aiosqlite:///{db}"
    await upgrade_async(url)
    queues = [{"name": QUEUE, "source": {"repository": str(tmp)},
               "build": {"targets": [{"name": "t", "command": "true"}]}, "hooks": hooks}]  # fmt: skip
    kafka = {"bootstrap_servers": bootstrap, "topic_prefix": f"b{uuid.uuid4().hex[:6]}."}
    server = await serve_hooks(
        "127.0.0.1:0", config=config_from_mapping({"kafka": kafka, "queues": queues}, source="b")
    )
    config = config_from_mapping(
        {
            "storage": {"url": url},
            "kafka": kafka,
            "extensions": {
                "hooks": {k: {"address": server.address} for k in ("webhook", "kafka", "log")}
            },
            "queues": queues,
        },
        source="bench",
    )
    settings = kafka_settings(config, "bench")
    await ensure_topics(settings, all_topics())
    stop = asyncio.Event()
    ready = asyncio.Event()

    async def on_ready() -> None:
        ready.set()

    dispatcher = asyncio.create_task(run_hooks_dispatcher(config, stop, on_ready))
    await asyncio.wait_for(ready.wait(), 120)
    engine = create_engine(url)
    store = Store(engine)
    recorded: dict[str, datetime] = {}
    start = time.perf_counter()
    try:
        async with Bus(settings) as bus:
            for n in range(events):
                now = datetime.now(UTC)
                fact = ValidationFact(
                    queue=QUEUE, uri=f"git+bench#main@{n:040x}", project="",
                    degree=0.0 if n % 3 else 1.0, request_id=f"request/{QUEUE}/{n + 1}",
                    origin=FactOrigin.BUILD, created_at=now,
                )  # fmt: skip
                await store.create_fact(fact)
                for event in verdict_events(fact, None, took_bookmark=False, last_green_uri="",
                                            strategy="full", build_link="", now=now):  # fmt: skip
                    if event.type.endswith("recorded"):
                        recorded[event.id] = now
                        await bus.publish(HOOK.name, event)
                if interval_s:
                    await asyncio.sleep(interval_s)
        recording_s = time.perf_counter() - start
        deadline = time.monotonic() + 600
        while len(fast.accepted()) < events and time.monotonic() < deadline:  # noqa: ASYNC110 - a count to poll
            await asyncio.sleep(0.05)
        got = fast.accepted()
        latencies = [(r.at - recorded[r.event["id"]]).total_seconds() for r in got]
        if len(got) != events:
            raise SystemExit(f"only {len(got)} of {events} delivered")
        return latencies, recording_s
    finally:
        stop.set()
        await asyncio.wait_for(dispatcher, 60)
        await server.stop(0)
        await engine.dispose()
        fast.stop()
        if slow is not None:
            slow.stop()


async def bare_posts(samples: int) -> list[float]:
    receiver = WebhookReceiver(secret(), status=200).start()
    try:
        async with httpx.AsyncClient() as client:
            out = []
            for _ in range(samples):
                t0 = time.perf_counter()
                await client.post(receiver.url, content=b"{}")
                out.append(time.perf_counter() - t0)
            return out
    finally:
        receiver.stop()


async def main(events: int, slow_s: float, interval_s: float) -> None:
    broker = EmbeddedBroker()
    await broker.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ref = await bare_posts(events)
            await run(Path(tmp), broker.bootstrap_servers, 10, None)  # warm-up, not counted
            bootstrap = broker.bootstrap_servers
            # interleaved halves (alone, beside, alone, beside), so a machine whose load
            # drifts during the run weighs on both sides alike
            alone: list[float] = []
            shared: list[float] = []
            rec_alone = rec_shared = 0.0
            for half in (events // 2, events - events // 2):
                latencies, recording_s = await run(Path(tmp), bootstrap, half, None, interval_s)
                alone += latencies
                rec_alone += recording_s
                latencies, recording_s = await run(Path(tmp), bootstrap, half, slow_s, interval_s)
                shared += latencies
                rec_shared += recording_s
    finally:
        await broker.stop()
    ref_p50 = statistics.median(ref)
    print(f"events: {events}, one verdict every {interval_s:g} s")
    print(f"reference: bare HTTP POST round trip  p50 {ref_p50 * 1000:8.2f} ms  "
          f"p99 {pct(ref, 0.99) * 1000:8.2f} ms")  # fmt: skip
    for label, values in (("alone", alone), (f"beside a {slow_s:g}s subscriber", shared)):
        p50, p99 = statistics.median(values), pct(values, 0.99)
        print(f"verdict recorded -> webhook received ({label}):  p50 {p50 * 1000:8.1f} ms  "
              f"p99 {p99 * 1000:8.1f} ms  (p50 = {p50 / ref_p50:6.1f}x the bare POST)")  # fmt: skip
    print(f"time to record {events} verdicts (paced): alone {rec_alone:.2f} s, beside the slow "
          f"subscriber {rec_shared:.2f} s (ratio {rec_shared / rec_alone:.2f})")  # fmt: skip
    print(f"fast subscription p50 beside the slow one / alone: "
          f"{statistics.median(shared) / statistics.median(alone):.2f}")  # fmt: skip
    print(f"RESULT hook_delivery_p50_vs_bare_post {statistics.median(alone) / ref_p50:.1f}")
    print(f"RESULT hook_isolation_fast_p50_beside_slow_vs_alone "
          f"{statistics.median(shared) / statistics.median(alone):.2f}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--slow-s", type=float, default=10.0)
    parser.add_argument(
        "--interval-s",
        type=float,
        default=0.25,
        help="seconds between verdicts (0: a burst, which measures queueing in one lane)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.events, args.slow_s, args.interval_s))
