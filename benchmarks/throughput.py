"""Heads per second over many Queues through ``stovepipe up``, and CPU per head per process.

Starts ``stovepipe up`` (Tansu, SQLite unless ``--database-url``; every stage in
one ``worker all`` process as in the embedded default, or one process per stage
with ``--per-stage-workers``; ``--max-in-flight 1`` handles one record per
partition at a time, the shape before issue 14's item 5) with ``--queues`` Queues on branches of one
repository and an instant target (``true``), creates one new head on every
branch, then ingests them all at once (``--inflight`` calls at a time) and waits
until every head has a recorded verdict. It waits the way a downstream team
would, on one ``WatchEvents`` stream opened before the first Ingest, so the
API's CPU is the product's and not the benchmark's own polling (before,
a ``GetGreenness`` every 0.5 s per head was most of the API's figure). Reports
heads/s and, from
``/proc/<pid>/stat`` of every process of the tree, CPU milliseconds per head
per process.

``--extensions git-local`` (default) uses the real git SourceControl and local
BuildRunner that ``stovepipe up`` starts. ``--extensions noop`` points every
Queue at the no-op SourceControl and BuildRunner of ``harness.noop_extensions``
(real gRPC servers answering from memory, a build finished at once), run in a
process of their own (``noop_servers.py``, its CPU on its own line and not in
the per-head total), so what is timed is Stovepipe itself. Goals (issue 14):
>= 50 heads/s with git + local runner, >= 300 heads/s with no-op extensions.

    .venv/bin/python benchmarks/throughput.py [--queues 100] [--inflight 64] [--extensions noop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import yaml
from proc_cpu import cpu_seconds, descendants, name_of
from verdict_watch import VerdictWatch

from stovepipe.runtime.processes import free_port
from stovepipe.runtime.sample_repo import GIT_IDENTITY, SampleRepo, Step
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc


def branch_heads(repo: Path, branches: list[str]) -> None:
    """One new commit on each branch, made with one ``fast-import`` process."""
    tip = subprocess.run(
        ["git", "rev-parse", "refs/heads/main"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lines = []
    for n, branch in enumerate(branches):
        lines += [
            f"commit refs/heads/{branch}",
            f"committer Bench <bench@example.com> {1_700_000_000 + n} +0000",
            f"data {len(branch) + 5}",
            f"head {branch}",
            f"from {tip}",
            "",
        ]
    subprocess.run(
        ["git", "fast-import", "--quiet", "--force"],
        cwd=repo,
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        env={**os.environ, **GIT_IDENTITY},
    )


def start_up(tmp: Path, per_stage: bool) -> subprocess.Popen[bytes]:
    """``stovepipe up`` on ``tmp/stovepipe.yaml``, in its own session, output to up.log."""
    log = (tmp / "up.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stovepipe.cli.main",
            "up",
            "--config",
            str(tmp / "stovepipe.yaml"),
            "--state-dir",
            str(tmp / "state"),
            *(["--per-stage-workers"] if per_stage else []),
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


async def wait_api(stub: Any, up: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise SystemExit(f"stovepipe up exited with {up.returncode}; see its up.log")
        try:
            await stub.Ping(pb.PingRequest(), timeout=2)
            return
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.5)
    raise SystemExit("the API of `stovepipe up` never answered")


class NoopServers:
    """``noop_servers.py`` as a child process: addresses, and one new head per branch on demand."""

    def __init__(self, repository: Path, branches: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("noop_servers.py")),
                "--repository",
                str(repository),
                "--branches",
                str(branches),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        words = self._line().split()
        if not words or words[0] != "READY":
            raise SystemExit(f"noop_servers.py did not start: {words}")
        self.source_control, self.build_runner = words[1], words[2]

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def push(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("push\n")
        self.process.stdin.flush()
        if self._line().strip() != "PUSHED":
            raise SystemExit("noop_servers.py did not push")

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="stovepipe-throughput-"))
    noop = args.extensions == "noop"
    servers: NoopServers | None = None
    repo: SampleRepo | None = None
    if noop:
        repository = tmp / "repo"
        repository.mkdir()
        branches = [f"q{i}" for i in range(args.queues)]
        servers = NoopServers(repository, args.queues)
    else:
        repo = SampleRepo(tmp / "repo").init()
        repo.commit(Step("root", {"README.md": "throughput\n"}, True))
        repository = repo.path
        branches = ["main", *(f"q{i}" for i in range(1, args.queues))]
        for branch in branches[1:]:
            repo.git("branch", branch)
    names = [f"tp/{b}" for b in branches]
    api = f"127.0.0.1:{free_port()}"
    config: dict[str, object] = {
        "api": {"listen": api},
        "queues": [
            {
                "name": name,
                "source": {"repository": str(repository), "ref": branch},
                "build": {"targets": [{"name": "instant", "command": "true"}]},
            }
            for name, branch in zip(names, branches, strict=True)
        ],
    }
    if servers is not None:
        config["extensions"] = {
            "sourcecontrol": {"noop": {"address": servers.source_control}},
            "buildrunner": {"noop": {"address": servers.build_runner}},
        }
        for queue in config["queues"]:  # type: ignore[attr-defined]
            queue["source"]["extension"] = "noop"
            queue["build"]["runner"] = "noop"
    if args.database_url:
        config["storage"] = {"url": args.database_url}
    if args.max_in_flight:
        config["workers"] = {"max_in_flight": args.max_in_flight}
    (tmp / "stovepipe.yaml").write_text(yaml.safe_dump(config))
    up = start_up(tmp, args.per_stage_workers)
    try:
        async with grpc.aio.insecure_channel(api) as channel:
            stub = pb_grpc.StovepipeServiceStub(channel)
            await wait_api(stub, up)
            if servers is not None:
                await asyncio.to_thread(servers.push)
            else:
                await asyncio.to_thread(branch_heads, repository, branches)
            pids = descendants(up.pid)
            before = {pid: cpu_seconds(pid) for pid in pids}
            if servers is not None:
                before_noop = cpu_seconds(servers.process.pid)
            gate = asyncio.Semaphore(args.inflight)
            verdicts = VerdictWatch(stub)
            await verdicts.open()
            began = time.perf_counter()

            async def one(queue: str) -> None:
                async with gate:
                    ingest = await stub.Ingest(pb.IngestRequest(queue=queue, trigger="bench"))
                await verdicts.recorded(stub, queue, ingest.uri)

            try:
                await asyncio.gather(*(one(name) for name in names))
            finally:
                verdicts.close()
            wall = time.perf_counter() - began
            per = sorted(
                ((name_of(pid), (cpu_seconds(pid) - before[pid]) / len(names)) for pid in pids),
                key=lambda p: -p[1],
            )
            if servers is not None:
                noop_share = (cpu_seconds(servers.process.pid) - before_noop) / len(names)
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
        if servers is not None:
            servers.close()
    total = sum(share for _, share in per)
    mode = "per-stage workers" if args.per_stage_workers else "worker all"
    limit = args.max_in_flight or "default"
    print(
        f"{len(names)} heads over {len(names)} Queues ({args.extensions}, {mode}, "
        f"max_in_flight {limit}): wall {wall:.1f}s, "
        f"{len(names) / wall:.1f} heads/s, {total * 1000:.0f} ms CPU per head over {len(per)} processes"
    )
    for name, share in per:
        print(f"  {share * 1000:7.1f} ms/head  {name}")
    if servers is not None:
        print(f"  {noop_share * 1000:7.1f} ms/head  no-op extensions (not in the total above)")
    goal = 300 if noop else 50
    if args.per_stage_workers or args.max_in_flight:
        # a reference shape, not the default: named apart, with no goal
        shape = f"_per_stage_in_flight_{limit}" if args.per_stage_workers else f"_in_flight_{limit}"
        print(
            f"RESULT heads_per_s_{len(names)}_queues_{args.extensions}{shape} {len(names) / wall:.2f}"
        )
        return
    print(
        f"RESULT heads_per_s_{len(names)}_queues_{args.extensions} {len(names) / wall:.2f} "
        f"goal>={goal}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--extensions", choices=["git-local", "noop"], default="git-local")
    parser.add_argument("--database-url", default="", help="default: SQLite in the state dir")
    parser.add_argument(
        "--per-stage-workers",
        action="store_true",
        help="one worker process per stage (production's shape) instead of `worker all`",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=0,
        help="workers.max_in_flight (1: one record at a time, the reference); default: config's",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
