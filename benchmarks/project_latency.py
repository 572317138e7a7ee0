"""What Phase 2 adds to a commit's latency: per-project facts, with and without
project-scoped builds, against the whole-repository pipeline in the same run.

Three stacks run one after another on the same broker and PostgreSQL (real git,
local runner and project-mapper servers over gRPC; instant build targets):

- ``whole-repo only``: no projects (the reference);
- ``projects, inherited``: three projects (web, api, lib); each commit touches
  only ``api/``, so ``api`` is answered by the incremental build and ``web`` and
  ``lib`` inherit their last green: analyze, no project-scoped build;
- ``projects, scoped builds``: the same with ``inherit_unaffected: false``, so
  ``web`` and ``lib`` each get a project-scoped build.

For each commit it measures, from storage timestamps, **build ended →
verdict complete**: from the moment buildsignal stored the end of the
whole-repository build (the Build row's last write; with projects the Request
then goes ``analyzing``) to the newest fact of the commit (with projects, the
whole-repository fact is written last, after every project's fact, and only
then does the Request end). Without
projects that interval is record alone; the difference of the p50s is what
Phase 2 adds. It also prints Ingest → verdict p50 and both ratios against the
whole-repository-only reference.

    .venv/bin/python benchmarks/project_latency.py [--heads 15] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stovepipe.embedded import EmbeddedBroker
from stovepipe.storage.migrate import upgrade_async
from stovepipe.v1 import stovepipe_service_pb2 as pb

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the shared harness: tests/harness

from harness.live import QUEUE, Live, live_stack  # noqa: E402
from harness.postgres import PostgresCluster  # noqa: E402

TARGETS: list[dict[str, Any]] = [
    {"name": f"{p}-test", "command": "true", "paths": [f"{p}/**"], "timeout_seconds": 60}
    for p in ("web", "api", "lib")
]
PROJECTS: list[dict[str, Any]] = [
    {"name": "web", "paths": ["web/**"], "targets": ["web-*"]},
    {"name": "api", "paths": ["api/**"], "targets": ["api-*"], "weight": 2},
    {"name": "lib", "paths": ["lib/**"], "targets": ["lib-*"]},
]
ROOT = {"web/a": "1\n", "api/a": "1\n", "lib/a": "1\n"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _verdict(live: Live, uri: str) -> None:
    while True:
        greenness = await live.stub.GetGreenness(pb.GetGreennessRequest(queue=QUEUE, uri=uri))
        if greenness.status == pb.GREENNESS_STATUS_RECORDED:
            return
        await asyncio.sleep(0.005)


async def run(
    tmp: Path, bootstrap: str, database_url: str, heads: int, **queue: Any
) -> tuple[list[float], list[float]]:
    """(build ended → verdict complete, ingest → verdict) seconds per commit."""
    settle: list[float] = []
    total: list[float] = []
    tmp.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - set-up only
    async with live_stack(tmp, bootstrap, database_url, targets=TARGETS, **queue) as live:
        for n in range(heads + 1):  # the first commit (a full build) warms up
            live.repo.commit(ROOT if n == 0 else {"api/a": f"v{n}\n"}, f"commit {n}")
            start = time.perf_counter()
            ingest = await live.ingest()
            await _verdict(live, ingest.uri)
            elapsed = time.perf_counter() - start
            request = await live.store.get_request(ingest.request_id)
            assert request is not None
            assert request.build_id
            build = await live.store.get_build(QUEUE, request.build_id)
            assert build is not None
            assert build.status.terminal
            facts = [
                f
                for p in ("", "web", "api", "lib")
                if (f := await live.store.get_fact(QUEUE, ingest.uri, p)) is not None
            ]
            newest = max(f.created_at for f in facts)
            if n:
                settle.append((newest - build.updated_at).total_seconds())
                total.append(elapsed)
    return settle, total


async def main(heads: int, use_sqlite: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="stovepipe-bench-projects-"))
    cluster = None
    broker = EmbeddedBroker()
    await broker.start()
    try:
        if not use_sqlite:
            cluster = PostgresCluster().start()
        results = {}
        for label, options in (
            ("whole-repo only", {}),
            ("projects, inherited", {"projects": PROJECTS}),
            ("projects, scoped builds", {"projects": PROJECTS, "inherit_unaffected": False}),
        ):
            name = label.replace(",", "").replace(" ", "-")
            database_url = (
                f"sqlite+aiosqlite:///{tmp / name}.db"
                if cluster is None
                else cluster.create_database(name.replace("-", "_"))
            )
            await upgrade_async(database_url)
            results[label] = await run(
                tmp / name, broker.bootstrap_servers, database_url, heads, **options
            )
            settle, total = results[label]
            print(
                f"{label}: build end→verdict p50 {pct(settle, 0.5) * 1000:.0f} ms, "
                f"ingest→verdict p50 {pct(total, 0.5) * 1000:.0f} ms",
                flush=True,
            )
    finally:
        await broker.stop()
        if cluster is not None:
            cluster.destroy()
    ref_settle = pct(results["whole-repo only"][0], 0.5)
    ref_total = pct(results["whole-repo only"][1], 0.5)
    print(
        f"storage {'SQLite' if use_sqlite else 'PostgreSQL 15'}; broker Tansu; {heads} commits each"
    )
    print(
        f"{'':26}{'build end→verdict p50':>22}{'added':>10}{'ratio':>8}"
        f"{'ingest→verdict p50':>21}{'ratio':>8}"
    )
    for label, (settle, total) in results.items():
        s50, t50 = pct(settle, 0.5), pct(total, 0.5)
        print(
            f"{label:26}{s50 * 1000:>19.0f} ms{(s50 - ref_settle) * 1000:>7.0f} ms"
            f"{s50 / ref_settle:>8.2f}{t50 * 1000:>18.0f} ms{t50 / ref_total:>8.2f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--heads", type=int, default=15, help="sequential commits per stack")
    parser.add_argument("--sqlite", action="store_true", help="use SQLite instead of PostgreSQL")
    args = parser.parse_args()
    asyncio.run(main(args.heads, args.sqlite))
