"""Idle CPU of ``stovepipe up``: the whole process tree, per process, with no work.

Starts ``stovepipe up`` on embedded defaults (Tansu, SQLite, git + local runner)
with one Queue, waits until its API answers and a settle period has passed,
then reads ``/proc/<pid>/stat`` CPU time of every process in the tree over a
measurement window. The figure is CPU seconds per wall second (1.0 = one core
busy). The goal in issue 14 is < 0.03 for the tree.

    .venv/bin/python benchmarks/idle_cpu.py [--settle 15] [--window 30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import yaml
from proc_cpu import cpu_seconds, descendants, name_of

from stovepipe.runtime.processes import free_port
from stovepipe.runtime.sample_repo import SampleRepo, build_targets
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc


def wait_api(api: str, up: subprocess.Popen[bytes], deadline_s: float = 180) -> None:
    channel = grpc.insecure_channel(api)
    stub = pb_grpc.StovepipeServiceStub(channel)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if up.poll() is not None:
            raise SystemExit(f"stovepipe up exited with {up.returncode}")
        try:
            stub.Ping(pb.PingRequest(), timeout=2)
            return
        except grpc.RpcError:
            time.sleep(0.5)
    raise SystemExit("the API of `stovepipe up` never answered")


def measure(
    settle_s: float, window_s: float, extra: dict[str, object]
) -> tuple[float, list[tuple[str, float]]]:
    tmp = Path(tempfile.mkdtemp(prefix="stovepipe-idle-"))
    repo = SampleRepo(tmp / "repo").init()
    api = f"127.0.0.1:{free_port()}"
    config = tmp / "stovepipe.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "api": {"listen": api},
                **extra,
                "queues": [
                    {
                        "name": "idle/main",
                        "source": {"repository": str(repo.path)},
                        "build": {"targets": build_targets()},
                    }
                ],
            }
        )
    )
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stovepipe.cli.main",
            "up",
            "--config",
            str(config),
            "--state-dir",
            str(tmp / "state"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_api(api, up)
        time.sleep(settle_s)
        pids = descendants(up.pid)
        before = {pid: cpu_seconds(pid) for pid in pids}
        start = time.monotonic()
        time.sleep(window_s)
        wall = time.monotonic() - start
        per = [(name_of(pid), (cpu_seconds(pid) - before[pid]) / wall) for pid in pids]
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
    return sum(share for _, share in per), sorted(per, key=lambda p: -p[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settle", type=float, default=45.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument(
        "--config",
        default="{}",
        help='extra top-level config as JSON, e.g. \'{"kafka": {"idle_fetch_max_wait_ms": 20}}\'',
    )
    args = parser.parse_args()
    total, per = measure(args.settle, args.window, json.loads(args.config))
    print(
        f"idle `stovepipe up`: {total * 100:.1f}% of one core over {args.window:.0f}s (goal < 3%)"
    )
    for name, share in per:
        print(f"  {share * 100:6.2f}%  {name}")
    print(f"RESULT idle_cpu_core_fraction {total:.4f} goal<0.03")


if __name__ == "__main__":
    main()
