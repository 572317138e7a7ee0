"""The git SourceControl's answers per head, against a bare round trip to the same server.

A real repository of ``--commits`` commits; the reference git server
(``stovepipe ext git``'s ``serve``) in its own process, reading it in place.
For every head the pipeline asks what it asks of SourceControl: ResolveHead,
DescribeCommit, ChangedFiles and ListCommits against the previous head,
IsAncestor, and a Promote of the head. ``--callers`` clients ask at once for
``--seconds``; the reference is the gRPC health Check on the same server, in
the same run (a round trip with no git work).

Prints heads/s, the server's CPU per head (``/proc``, its git children
included) and the ratio of one head's six calls to six health checks.

    .venv/bin/python benchmarks/sourcecontrol_git.py [--commits 300] [--callers 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc

from stovepipe.extensions.sourcecontrol import QueueSource, SourceControlClient
from stovepipe.grpcutil import open_channel
from stovepipe.runtime.processes import free_port

_TICK = os.sysconf("SC_CLK_TCK")

SERVER = """
import asyncio, sys
from stovepipe.extensions.sourcecontrol.git import ServedRepositories, ServedRepository, serve
from stovepipe.extensions.sourcecontrol.git.served import Promotion

async def main():
    served = ServedRepositories(
        [ServedRepository(sys.argv[2], frozenset({Promotion("main", "verified-main")}))]
    )
    server = await serve(sys.argv[1], served=served, cache_dir=None)
    print("ready", flush=True)
    await server.server.wait_for_termination()

asyncio.run(main())
"""


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its reaped children (its git processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK


def make_repository(path: Path, commits: int) -> list[str]:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
    }

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args], check=True, capture_output=True, text=True, env=env
        ).stdout.strip()

    path.mkdir()
    git("init", "-q", "-b", "main")
    shas = []
    for n in range(commits):
        (path / f"dir{n % 10}").mkdir(exist_ok=True)
        (path / f"dir{n % 10}" / f"file{n}.txt").write_text(f"{n}\n")
        git("add", "-A")
        git("commit", "-q", "-m", f"commit {n}")
        shas.append(git("rev-parse", "HEAD"))
    git("gc", "-q")
    return shas


async def measure(args: argparse.Namespace) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="stovepipe-gitbench-"))
    repo = tmp / "repo"
    make_repository(repo, args.commits)
    address = f"127.0.0.1:{free_port()}"
    server = start_server(address, repo)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise SystemExit("the git server did not start")
        source = QueueSource(queue="bench/main", repository=str(repo), ref="main")
        channel = open_channel(address)
        client = SourceControlClient(channel, timeout_s=60)
        health = health_pb2_grpc.HealthStub(channel)
        try:
            head = await client.resolve_head(source)
            uris = [head.rsplit("@", 1)[0] + "@" + sha for sha in make_shas(repo)]

            async def one_head(i: int) -> None:
                uri, previous = uris[i % len(uris)], uris[(i % len(uris)) - 1]
                await client.resolve_head(source)
                await client.describe_commit(source, uri)
                await client.changed_files(source, previous, uri)
                await client.list_commits(source, previous, uri)
                await client.is_ancestor(source, previous, uri)
                await client.promote(source, uri, "verified-main")

            async def six_checks(_: int) -> None:
                for _ in range(6):
                    await health.Check(health_pb2.HealthCheckRequest())

            results: dict[str, float] = {}
            for name, call in (("reference", six_checks), ("git", one_head)):
                await run_for(call, args.callers, 1.0, server.pid)  # warm-up
                rate, cpu = await run_for(call, args.callers, args.seconds, server.pid)
                results[f"{name}_per_s"] = rate
                results[f"{name}_cpu_ms"] = cpu
            return results
        finally:
            await channel.close(None)
    finally:
        server.terminate()
        server.wait(timeout=30)


def start_server(address: str, repo: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVER, address, str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def make_shas(repo: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--reverse", "main"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


async def run_for(call: Any, callers: int, seconds: float, pid: int) -> tuple[float, float]:
    """Calls per second of ``call`` with ``callers`` at once, and server CPU ms per call."""
    done = 0
    end = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await call(next(counter))
            done += 1

    cpu0, began = tree_cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    wall, cpu = time.perf_counter() - began, tree_cpu_seconds(pid) - cpu0
    return done / wall, cpu / max(done, 1) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    r = asyncio.run(measure(args))
    print(
        f"git SourceControl: {r['git_per_s']:.1f} heads/s (6 calls each), server CPU "
        f"{r['git_cpu_ms']:.1f} ms per head; reference: {r['reference_per_s']:.1f} x 6 health "
        f"checks/s, {r['reference_cpu_ms']:.2f} ms"
    )
    print(
        f"RESULT sourcecontrol_git_head_vs_6_roundtrips {r['reference_per_s'] / r['git_per_s']:.2f}"
    )
    print(f"RESULT sourcecontrol_git_cpu_ms_per_head {r['git_cpu_ms']:.2f}")


if __name__ == "__main__":
    main()
