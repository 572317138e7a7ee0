"""``GetLastGreen`` under load against a bare grpc.aio echo server timed in the same run.

Builds one green head through the live pipeline (real Tansu, PostgreSQL 15, git
and local-runner extensions), then starts ``stovepipe api`` as its own process
on that storage, and a bare grpc.aio server (one unary method that returns its
request bytes) as another process. The same client drives both:

- closed loop, ``--inflight`` calls in flight for ``--seconds``: rps, p50/p99,
  server CPU per call (from ``/proc``);
- open loop at ``--rate`` calls per second: p99 latency.

Goals (issue 14): API rps >= 0.5x echo rps; p99 < 5 ms at 1k rps.

``--api-processes N`` starts the API as a group of N processes on one port
(``stovepipe api --processes N``); server CPU is then the whole group's.

    .venv/bin/python benchmarks/gate_path.py [--inflight 64] [--seconds 10] [--rate 1000]
                                             [--api-processes 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import yaml

from stovepipe.embedded import EmbeddedBroker
from stovepipe.runtime.processes import free_port
from stovepipe.storage.migrate import upgrade_async
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))  # the shared harness: tests/harness

from harness.live import QUEUE, live_stack  # noqa: E402
from harness.postgres import PostgresCluster  # noqa: E402

ECHO_METHOD = "/bench.Echo/Echo"
_TICK = os.sysconf("SC_CLK_TCK")

ECHO_SERVER = """
import asyncio, sys, grpc
async def main():
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)})
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(sys.argv[1])
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()
async def _echo(request, context):
    return request
asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and of its live children (the members of an API group)."""
    total = 0.0
    for one in (pid, *children(pid)):
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(p) for p in found]


def spawn(*args: str) -> subprocess.Popen[bytes]:
    """A Python child process with its output discarded."""
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def wait_ready(call: Callable[[], Awaitable[Any]], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            await call()
            return
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.2)
    raise SystemExit("server never answered")


async def closed_loop(
    call: Callable[[], Awaitable[Any]], inflight: int, seconds: float, pid: int
) -> dict[str, float]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < end:
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    cpu0, began = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    wall, cpu = time.perf_counter() - began, cpu_seconds(pid) - cpu0
    return {
        "rps": len(latencies) / wall,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "cpu_ms_per_call": cpu / len(latencies) * 1000,
    }


async def open_loop(
    call: Callable[[], Awaitable[Any]], rate: float, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    pending: set[asyncio.Task[None]] = set()

    errors: dict[str, int] = {}

    async def one() -> None:
        start = time.perf_counter()
        try:
            await asyncio.wait_for(call(), 5.0)
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
            return
        except TimeoutError:
            errors["over 5 s"] = errors.get("over 5 s", 0) + 1
            return
        latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - began < seconds:
        due = int((now - began) * rate)
        while sent < due:
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(0.001)
    await asyncio.gather(*pending)
    if errors:
        print(f"  open loop errors: {errors}")
    return {
        "rps": len(latencies) / (time.perf_counter() - began),
        "p99_ms": pct(latencies, 0.99) * 1000,
    }


async def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="stovepipe-gate-"))
    cluster = PostgresCluster().start()
    broker = EmbeddedBroker()
    await broker.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        database_url = cluster.create_database("gate")
        await upgrade_async(database_url)
        targets = [{"name": "instant", "command": "true", "timeout_seconds": 60}]
        async with live_stack(tmp, broker.bootstrap_servers, database_url, targets=targets) as live:
            live.repo.commit({"README.md": "gate\n"}, "root")
            ingest = await live.ingest(QUEUE)
            await live.wait_terminal(ingest.request_id)
            config = live.config.model_dump(mode="json")
        api = f"127.0.0.1:{free_port()}"
        config["api"]["listen"] = api
        (tmp / "api.yaml").write_text(yaml.safe_dump(config))
        api_proc = spawn(
            "-m",
            "stovepipe.cli.main",
            "api",
            "--config",
            str(tmp / "api.yaml"),
            "--processes",
            str(args.api_processes),
        )
        procs.append(api_proc)
        echo = f"127.0.0.1:{free_port()}"
        echo_proc = spawn("-c", ECHO_SERVER, echo)
        procs.append(echo_proc)
        results: dict[str, dict[str, float]] = {}
        async with (
            grpc.aio.insecure_channel(api) as api_channel,
            grpc.aio.insecure_channel(echo) as echo_channel,
        ):
            stub = pb_grpc.StovepipeServiceStub(api_channel)
            request = pb.GetLastGreenRequest(queue=QUEUE)
            payload = request.SerializeToString()
            echo_call = echo_channel.unary_unary(ECHO_METHOD, None, None)

            async def last_green() -> Any:
                answer = await stub.GetLastGreen(request)
                assert answer.found, "GetLastGreen found no green commit"
                return answer

            async def echoed() -> Any:
                return await echo_call(payload)

            await wait_ready(last_green, api_proc)
            await wait_ready(echoed, echo_proc)
            for name, call, proc in (
                ("echo", echoed, echo_proc),
                ("GetLastGreen", last_green, api_proc),
            ):
                await closed_loop(call, args.inflight, 1.0, proc.pid)  # warm-up
                results[name] = await closed_loop(call, args.inflight, args.seconds, proc.pid)
                results[name].update(
                    {
                        f"open_{k}": v
                        for k, v in (await open_loop(call, args.rate, args.seconds / 2)).items()
                    }
                )
        return results
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        await broker.stop()
        cluster.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop calls per second")
    parser.add_argument(
        "--api-processes", type=int, default=1, help="stovepipe api --processes (CPU: the group)"
    )
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    for name, r in results.items():
        print(
            f"{name:13s} {args.inflight} in flight: {r['rps']:7.0f} rps  p50 {r['p50_ms']:6.1f} ms  "
            f"p99 {r['p99_ms']:6.1f} ms  server CPU {r['cpu_ms_per_call']:.2f} ms/call;  "
            f"at {args.rate:.0f} rps offered: {r['open_rps']:.0f} rps, p99 {r['open_p99_ms']:.1f} ms"
        )
    ratio = results["GetLastGreen"]["rps"] / results["echo"]["rps"]
    name = "getlastgreen" if args.api_processes == 1 else f"getlastgreen_{args.api_processes}proc"
    print(f"RESULT {name}_vs_echo_rps {ratio:.3f} goal>=0.5")
    print(f"RESULT {name}_p99_ms_at_rate {results['GetLastGreen']['open_p99_ms']:.2f} goal<5")


if __name__ == "__main__":
    main()
