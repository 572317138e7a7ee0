"""Server time of the console's Queue grid over a 1,000-commit history.

Starts the API in this process on a SQLite store holding one Queue with
``--commits`` commits (a Request each; nine in ten with a recorded verdict, the
tenth still waiting), serves the console in the same process, and pages
through the whole history ``--rounds`` times, reading the server time the
console reports in its ``Server-Timing`` header. The reference, timed in the
same run, is the ``ListRequests`` call of the same page size that each grid
page makes per column (this Queue has one, the whole repository; each page
also reads ``ListQueues``): the ratio is what rendering a page costs over the
API read under it. The machines are shared and noisy: read the ratio.

    .venv/bin/python benchmarks/console_pages.py [--commits 1000] [--rounds 5] [--page-size 50]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import uvicorn

from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.config import config_from_mapping
from stovepipe.console.process import uvicorn_config
from stovepipe.domain import FactOrigin, ValidationFact
from stovepipe.runtime.processes import free_port
from stovepipe.stages import HeadIngester, Revalidator
from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import upgrade_async
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc

QUEUE = "bench/main"
_TIMING = re.compile(r"app;dur=([0-9.]+)")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _get(url: str) -> tuple[float, str]:
    with urllib.request.urlopen(url, timeout=60) as answer:
        body = answer.read().decode()
        match = _TIMING.search(answer.headers["Server-Timing"])
        assert match is not None
        return float(match.group(1)), body


async def _fill(store: Store, commits: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(commits):
        now = start + timedelta(minutes=i)
        uri = f"git:bench#{i:040x}"
        request, _ = await store.create_request(QUEUE, uri, trigger="bench", now=now)
        if i % 10 == 9:
            continue
        await store.create_fact(
            ValidationFact(
                queue=QUEUE,
                uri=uri,
                project="",
                degree=0.0 if i % 7 else 1.0,
                request_id=request.id,
                origin=FactOrigin.BUILD,
                created_at=now,
            )
        )


async def main(commits: int, rounds: int, page_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await upgrade_async(url)
        engine = create_engine(url)
        store = Store(engine)
        config = config_from_mapping(
            {
                "queues": [
                    {
                        "name": QUEUE,
                        "source": {"repository": "/nonexistent", "ref": "main"},
                        "build": {"targets": [{"name": "t", "command": "true"}]},
                    }
                ],
            },
            source="bench",
        )
        await _fill(store, commits)
        parts: Any = (store, config, None, None, None)  # nothing is ingested here
        api = await serve_api(
            StovepipeApi(store, config, HeadIngester(*parts), Revalidator(*parts)), "127.0.0.1:0"
        )
        data = config.model_dump(mode="json", exclude_none=True)
        data["console"] = {"api": {"address": api.address}, "page_size": page_size}
        settings = uvicorn_config(
            config_from_mapping(data, source="bench"), f"127.0.0.1:{free_port()}"
        )
        settings.log_level = "warning"
        server = uvicorn.Server(settings)
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{settings.port}/queues/{QUEUE}"
        channel = grpc.aio.insecure_channel(api.address)
        stub = pb_grpc.StovepipeServiceStub(channel)
        grid_ms: list[float] = []
        first_ms: list[float] = []
        list_ms: list[float] = []
        pages = 0
        for _ in range(rounds):
            token = ""
            while True:
                query = f"?page={token}" if token else ""
                server_ms, body = await asyncio.to_thread(_get, base + query)
                (first_ms if not token else grid_ms).append(server_ms)
                pages += 1
                started = time.perf_counter()
                answer = await stub.ListRequests(
                    pb.ListRequestsRequest(queue=QUEUE, page_size=page_size, page_token=token)
                )
                list_ms.append((time.perf_counter() - started) * 1000)
                token = answer.next_page_token
                if not token:
                    break
                assert "Older commits" in body
        every = first_ms + grid_ms
        print(f"{commits} commits, page size {page_size}, {pages} grid pages served")
        print(
            f"grid page server time: p50 {pct(every, 0.5):.1f} ms, p99 {pct(every, 0.99):.1f} ms "
            f"(first page p50 {pct(first_ms, 0.5):.1f} ms, older pages p50 "
            f"{pct(grid_ms, 0.5) if grid_ms else 0:.1f} ms); goal < 300 ms"
        )
        print(
            f"reference ListRequests p50 {pct(list_ms, 0.5):.1f} ms; "
            f"ratio grid p50 / ListRequests p50 = {pct(every, 0.5) / pct(list_ms, 0.5):.1f}"
        )
        print(f"RESULT console_grid_page_p50_ms {pct(every, 0.5):.1f} goal<300")
        server.should_exit = True
        await serving
        await channel.close(None)
        await api.stop(0)
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.commits, args.rounds, args.page_size))
