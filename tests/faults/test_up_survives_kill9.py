"""``stovepipe up`` keeps its process tree alive: kill -9 of any child while heads flow.

A user's ``stovepipe up`` (run through the CLI, on PostgreSQL given by
``STOVEPIPE_DATABASE_URL`` with a password in it) validates at least forty
commits of a real git repository whose true verdicts the test knows. Every
child is killed with SIGKILL in turn while the heads are reported: the worker
(``worker all``, the default; or, with ``--per-stage-workers``, each stage's worker), the API,
the extension servers, and the console. ``stovepipe up`` must restart each one, stay up and
answer Ping, settle every head, and never record a green verdict for a broken
commit.

No good commit may end broken because of a kill: the local BuildRunner keeps
its builds across a restart (and runs an interrupted one again), and a
checkout that meets the git server while it is being restarted retries
instead of erroring the build. How many good commits ended broken is printed
and recorded as the ``good_commits_recorded_broken`` property; the test wants
none.

The children are found the way a user would find them, in the process table
(their parent is ``stovepipe up``); their readiness is their gRPC health (the
console's is its ``/healthz``, which asks the API behind it).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import stat
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from sqlalchemy.engine import make_url

from harness.postgres import PostgresCluster
from stovepipe.console.process import console_ready
from stovepipe.grpcutil import open_channel
from stovepipe.runtime.health import grpc_serving
from stovepipe.runtime.processes import free_port
from stovepipe.runtime.registry import STAGE_NAMES
from stovepipe.runtime.sample_repo import SampleRepo, Step
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import types_pb2

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.timeout(420)]

CLI = [sys.executable, "-m", "stovepipe.cli.main"]
QUEUE = "kill/main"
HEADS = 40
"""At least this many heads per run: each victim is killed after ``ceil(HEADS / victims)``
new heads (4 each for the 11 children of ``worker all``, 3 each for the 16 of
``--per-stage-workers``), so every kill meets heads in flight."""
MAX_CONCURRENT = 2
PASSWORD = "kill9-pw-never-shown"
_NOT_WORKERS = ("api", "console", "ext git", "ext local-runner", "ext project-mapper", "ext hooks")


def _victims(workers: tuple[str, ...]) -> tuple[str, ...]:
    """Each child once; the extensions and the API among the workers, so heads meet them all."""
    return (
        *workers[:1], "ext local-runner", *workers[1:3], "api", *workers[3:4], "ext git",
        *workers[4:5], "ext project-mapper", *workers[5:], "console", "ext hooks",
    )  # fmt: skip


MODES = {
    # the default: every stage in one `worker all` process
    "all": ((), ("worker all",)),
    # as production runs them: one process per stage
    "per-stage": (("--per-stage-workers",), tuple(f"worker {s}" for s in STAGE_NAMES)),
}
START_S = 180.0
SETTLE_S = 180.0

_GOOD = "def add(a, b):\n    return a + b\n"
_BROKEN = "def add(a, b):\n    return a - b\n"
_VERDICT_STATES = (types_pb2.REQUEST_STATE_SUCCEEDED, types_pb2.REQUEST_STATE_FAILED)
_TERMINAL = {
    types_pb2.REQUEST_STATE_SUCCEEDED,
    types_pb2.REQUEST_STATE_FAILED,
    types_pb2.REQUEST_STATE_SUPERSEDED,
    types_pb2.REQUEST_STATE_CANCELLED,
}


@dataclass
class Running:
    """A child of ``stovepipe up`` as the process table shows it."""

    name: str
    pid: int
    probe: str


def _children(parent: int, api: str) -> dict[str, Running]:
    """The live children of ``parent`` that ``stovepipe up`` supervises, by name."""
    found: dict[str, Running] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) != parent or fields[0] in ("Z", "X"):
            continue
        words = [a.decode() for a in argv if a]
        if "stovepipe.cli.main" not in words:
            continue  # the embedded broker
        verb = words[words.index("stovepipe.cli.main") + 1 :]
        if verb[0] == "worker":
            name, probe = f"worker {verb[1]}", f"127.0.0.1:{verb[verb.index('--health-port') + 1]}"
        elif verb[0] == "ext":
            name, probe = f"ext {verb[1]}", verb[verb.index("--listen") + 1]
        elif verb[0] == "console":
            name, probe = "console", f"http://{verb[verb.index('--listen') + 1]}"
        else:
            name, probe = verb[0], api
        found[name] = Running(name, int(entry.name), probe)
    return found


async def _ready(child: Running) -> bool:
    if child.name == "console":
        try:
            return await console_ready(child.probe)
        except OSError:
            return False
    return await grpc_serving(child.probe)


async def _until(check: Any, timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f}s")
        await asyncio.sleep(0.2)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class Heads:
    """The commits pushed to the Queue's branch, with their true verdict."""

    def __init__(self, repo: SampleRepo) -> None:
        self.repo = repo
        self.truth: dict[str, bool] = {}
        self.requests: dict[str, str] = {}  # request id -> commit

    def push(self) -> str:
        n = len(self.truth) + 1
        green = n % 3 != 2
        files: dict[str, str | None] = {"src/calc.py": (_GOOD if green else _BROKEN) + f"# {n}\n"}
        sha = self.repo.commit(Step(f"change {n}", files, green))
        self.truth[sha] = green
        return sha


async def _ingest(stub: Any, heads: Heads, up: subprocess.Popen[bytes]) -> None:
    """Push one commit and report it, retrying while the API (or git) is being restarted."""
    sha = await asyncio.to_thread(heads.push)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        assert up.poll() is None, "stovepipe up exited"
        try:
            response = await stub.Ingest(pb.IngestRequest(queue=QUEUE, trigger="kill9"), timeout=5)
        except grpc.aio.AioRpcError as exc:
            if loop.time() > deadline:
                raise AssertionError(f"ingest of {sha[:10]} kept failing: {exc}") from exc
            await asyncio.sleep(0.2)
            continue
        # nothing else pushes, so the head reported is the commit just pushed
        assert response.uri.rsplit("@", 1)[-1] == sha, (response.uri, sha)
        heads.requests[response.request_id] = sha
        return


def _config(tmp_path: Path, repo: SampleRepo, api: str) -> Path:
    policy = {"max_attempts": 10, "backoff_initial_seconds": 0.2, "backoff_max_seconds": 2}
    data = {
        "api": {"listen": api},
        "kafka": {
            "partitions": 2,
            # a killed member holds its partitions until its session expires
            "session_timeout_ms": 4_000,
            "heartbeat_interval_ms": 800,
            "graceful_timeout_seconds": 5,
            # slow down 2 s after the last record, not 30: less CPU between kills
            "idle_after_seconds": 2,
            "idle_fetch_max_wait_ms": 200,
        },
        "workers": {
            "process": policy,
            "build": policy,
            "buildsignal": policy,
            "record": policy,
            "buildsignal_poll_interval_seconds": 0.2,
            "sweeper_stale_after_seconds": 4,
        },
        "queues": [
            {
                "name": QUEUE,
                "source": {"repository": str(repo.path), "ref": "main"},
                "build": {
                    "targets": [
                        {
                            "name": "adds",
                            "command": "grep -q 'return a + b' src/calc.py",
                            "paths": ["src/**"],
                            "timeout_seconds": 30,
                        }
                    ]
                },
                "max_concurrent": MAX_CONCURRENT,
                # One project owning the one target: analyze, the mapper and the
                # per-project path are killed and restarted with everything else.
                "projects": [{"name": "calc", "paths": ["src/**"], "targets": ["adds"]}],
            }
        ],
    }
    path = tmp_path / "stovepipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_up_restarts_every_child_killed_while_heads_flow_and_no_verdict_lies(
    mode: str, tmp_path: Path, fault_postgres: PostgresCluster, record_property: Any
) -> None:
    flags, workers = MODES[mode]
    victims = _victims(workers)
    every_child = {*_NOT_WORKERS, *workers}
    repo = SampleRepo(tmp_path / "repo").init()
    heads = Heads(repo)
    database = await asyncio.to_thread(
        fault_postgres.create_database, f"kill9_{mode.replace('-', '_')}"
    )
    url = make_url(database).set(password=PASSWORD).render_as_string(hide_password=False)
    api = f"127.0.0.1:{free_port()}"
    state = tmp_path / "state"
    output = tmp_path / "up.out"
    env = {**os.environ, "STOVEPIPE_DATABASE_URL": url, "COLUMNS": "200"}
    with output.open("wb") as out:
        up = subprocess.Popen(
            [
                *CLI,
                "up",
                "--config",
                str(_config(tmp_path, repo, api)),
                "--state-dir",
                str(state),
                *flags,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    channel = open_channel(api)
    stub: Any = pb_grpc.StovepipeServiceStub(channel)
    kills: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    phases: dict[str, float] = {"began": loop.time()}
    try:

        async def api_ready() -> bool:
            assert up.poll() is None, output.read_text()
            return "API ready" in output.read_text()

        await _until(api_ready, START_S, "stovepipe up ready")
        phases["up ready"] = loop.time()
        children = _children(up.pid, api)
        assert set(children) == every_child == set(victims)
        assert all([await _ready(c) for c in children.values()])
        # its state is private (that the password is shown nowhere is checked at the end)
        assert _mode(state / "stovepipe.effective.yaml") == 0o600
        assert _mode(state / "logs") == 0o700

        heads_per_kill = -(-HEADS // len(victims))
        for victim in victims:
            for _ in range(heads_per_kill):
                await _ingest(stub, heads, up)
            killed = _children(up.pid, api)[victim].pid
            os.kill(killed, signal.SIGKILL)
            kills[victim] += 1

            async def replaced(victim: str = victim, killed: int = killed) -> bool:
                assert up.poll() is None, output.read_text()
                now = _children(up.pid, api).get(victim)
                return now is not None and now.pid != killed

            await _until(replaced, 60, f"{victim} restarted")

        async def all_ready() -> bool:
            assert up.poll() is None, output.read_text()
            now = _children(up.pid, api)
            return set(now) == every_child and all([await _ready(c) for c in now.values()])

        phases["killed"] = loop.time()
        await _until(all_ready, 120, "every child ready again")
        phases["all ready"] = loop.time()
        pong = await stub.Ping(pb.PingRequest(), timeout=10)
        assert pong.version

        async def settled() -> bool:
            for request_id in heads.requests:
                got = await stub.GetRequest(pb.GetRequestRequest(request_id=request_id), timeout=10)
                if got.request.state not in _TERMINAL:
                    return False
                # With projects the verdict follows the Request: it is written once
                # the project has its fact.
                if got.request.state in _VERDICT_STATES:
                    greenness = await stub.GetGreenness(
                        pb.GetGreennessRequest(queue=QUEUE, uri=got.request.uri), timeout=10
                    )
                    if greenness.status != pb.GREENNESS_STATUS_RECORDED:
                        return False
            return True

        await _until(settled, SETTLE_S, "every head terminal with its verdict")
        phases["settled"] = loop.time()
        states: Counter[str] = Counter()
        falsely_green: list[str] = []
        good_broken: list[str] = []
        for request_id, sha in heads.requests.items():
            request = (
                await stub.GetRequest(pb.GetRequestRequest(request_id=request_id), timeout=10)
            ).request
            name = types_pb2.RequestState.Name(request.state).removeprefix("REQUEST_STATE_")
            states[name.lower()] += 1
            greenness = await stub.GetGreenness(
                pb.GetGreennessRequest(queue=QUEUE, uri=request.uri), timeout=10
            )
            if request.state in (types_pb2.REQUEST_STATE_SUCCEEDED, types_pb2.REQUEST_STATE_FAILED):
                assert greenness.status == pb.GREENNESS_STATUS_RECORDED, request_id
            if greenness.status != pb.GREENNESS_STATUS_RECORDED:
                continue
            green = greenness.fact.degree == 0.0
            if green and not heads.truth[sha]:
                falsely_green.append(f"{request_id} {sha[:10]}")
            project = await stub.GetGreenness(
                pb.GetGreennessRequest(queue=QUEUE, uri=request.uri, project="calc"), timeout=10
            )
            assert project.status == pb.GREENNESS_STATUS_RECORDED, request_id
            if project.fact.degree == 0.0 and not heads.truth[sha]:
                falsely_green.append(f"{request_id} {sha[:10]} (project calc)")
            if not green and heads.truth[sha]:
                origin = types_pb2.FactOrigin.Name(greenness.fact.origin)
                good_broken.append(f"{request_id} {sha[:10]} {origin}: {greenness.fact.reason}")
        assert up.poll() is None
        pong = await stub.Ping(pb.PingRequest(), timeout=10)
        assert pong.version
    finally:
        await channel.close(None)
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(up.wait, 120)
        phases["stopped"] = loop.time()
    shown = output.read_text()
    restarts = Counter(
        line.split(" restarted (pid", 1)[0]
        for line in shown.splitlines()
        if " restarted (pid " in line
    )
    print(
        f"\nkill -9 under stovepipe up: {len(heads.requests)} heads, {sum(kills.values())} kills, "
        f"restarts {dict(restarts)}, states {dict(states)}, "
        f"good commits recorded broken: {len(good_broken)}"
    )
    for line in good_broken:
        print(f"  good commit recorded broken: {line}")
    record_property("good_commits_recorded_broken", len(good_broken))
    marks = list(phases.items())
    print("  " + ", ".join(f"{b[0]} +{b[1] - a[1]:.1f}s" for a, b in itertools.pairwise(marks)))
    assert falsely_green == [], falsely_green
    assert code == 0, shown
    assert "stopped cleanly" in shown
    assert "crash-looping" not in shown
    assert set(restarts) == set(victims), shown
    assert PASSWORD not in shown
    assert "***@" in shown
    for log in (state / "logs").iterdir():
        assert PASSWORD not in log.read_text(errors="replace"), log
    # the kills must cost no verdict: no good commit recorded broken, fail-closed or not
    assert good_broken == [], good_broken
