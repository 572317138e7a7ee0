"""A production-shaped Stovepipe whose every part can be broken on purpose.

The fault-injection suite and the soak run the product as a tree of real
processes — the Tansu broker, PostgreSQL, the git SourceControl server, the
local BuildRunner, one process per stage worker (or several: ``replicas``),
the delay forwarder, the sweeper and the API — and then kill, restart and
starve those processes while heads flow. Extensions are reached through
:class:`ChaosProxy`, so they can also be made slow, failing or incomprehensible.

A *keeper* task plays the role of a process supervisor (systemd, Kubernetes):
a worker that dies is started again after a short pause. Git repositories are
real, and the stack knows the true verdict of every commit it makes, so the
invariant checks can tell a falsely green fact from an honest one. Each
Queue's repository is a bare *origin* that the extensions read and promote in,
fed by pushes from a working clone the stack commits in (:class:`QueueRepo`).

With ``noop`` (:mod:`harness.noop_extensions`), the two extension servers are
in-memory ones in the test's own process instead of the git server and the
local runner, reached directly rather than through chaos proxies: what is
measured and broken is then the pipeline alone, at hundreds of heads. Each
Queue's history is then a :class:`~harness.noop_extensions.NoopHistory`.

Unless ``hooks=False`` (the default with ``noop``), every Queue has two hook
subscriptions served by the reference hooks server (``ext-hooks``) and sent
by the hooks dispatcher (``worker-hooks``): ``flaky``, every event to a
loopback receiver that answers 503 to every third request, and ``dead``, the
transitions to a port nobody listens on, given up after two attempts. The
invariant checks then also see every event end ``delivered`` or ``failed``.

One stack can serve many tests: it is started with ``rounds`` sets of Queues,
and :meth:`FaultStack.reset` lifts every fault, waits until every process is
back and ready, and hands the next test Queues nobody has used. Stopping it is
a SIGKILL of everything: graceful stops are tested explicitly
(:meth:`FaultStack.terminate`), never on the way out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from harness.chaos_proxy import ChaosProxy
from harness.git_repos import WorkRepo, init_bare
from harness.noop_extensions import NoopExtensions
from harness.postgres import PostgresCluster
from harness.webhook_receiver import WebhookReceiver
from stovepipe.embedded.broker import EmbeddedBroker
from stovepipe.grpcutil import open_channel
from stovepipe.messaging import KafkaSettings
from stovepipe.runtime.health import grpc_serving
from stovepipe.runtime.processes import free_port, kill
from stovepipe.runtime.registry import STAGE_NAMES
from stovepipe.runtime.sample_repo import SANDBOX_PYTHON
from stovepipe.stages.topics import HOOK
from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import upgrade
from stovepipe.testing import until
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import topics_pb2

log = logging.getLogger(__name__)

WORKERS = STAGE_NAMES
"""Worker processes, by the stage name ``stovepipe worker`` takes (from the registry)."""

GROUP_TIMING = {
    "session_timeout_ms": 4_000,
    "heartbeat_interval_ms": 800,
    "idle_after_seconds": 2,
    "idle_fetch_max_wait_ms": 200,
}
"""Consumer-group timing unless ``kafka`` says otherwise: Tansu completes a join after
about half the session timeout, so a (re)started worker consumes within seconds. A
consumer slows to a 200 ms fetch wait 2 s after its last record: a fault test's heads
come in bursts, and a dozen processes fetching every 20 ms for 30 s after each burst
were a large share of the suite's CPU."""
START_S = 120.0
"""Bound for each server of the stack to serve after its start. A server serves in a
second or two; the bound is for a loaded two-core machine (the suite runs other
stacks beside this one), where it is a wait, not a failure."""

_GOOD = "def add(a, b):\n    return a + b\n"
_BROKEN = "def add(a, b):\n    return a - b\n"
_TEST = (
    "import sys\nimport unittest\n\nsys.path.insert(0, 'src')\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\n"
    "if __name__ == '__main__':\n    unittest.main()\n"
)


def fault_targets() -> list[dict[str, Any]]:
    return [
        {
            "name": "unit-tests",
            "command": f"{SANDBOX_PYTHON} tests/test_calc.py",
            "paths": ["src/**", "tests/**"],
            "timeout_seconds": 60,
        }
    ]


DOCS_TARGET: dict[str, Any] = {
    "name": "docs-check",
    "command": f"{SANDBOX_PYTHON} -c pass",
    "paths": ["docs/**"],
    "timeout_seconds": 60,
}
FAULT_PROJECTS: list[dict[str, Any]] = [
    {"name": "calc", "paths": ["src/**", "tests/**"], "targets": ["unit-*"], "weight": 3},
    {"name": "docs", "paths": ["docs/**"], "targets": ["docs-*"], "weight": 1},
]
"""With ``projects``: ``calc`` follows the code (its truth is the commit's), ``docs`` is
never touched after the first commit and is always green, so after the first head it
is inherited (or, on a Queue with ``inherit_unaffected: false``, built on its own)."""
PROJECT_FOLLOWS_CODE = {"calc": True, "docs": False}


def project_truth(project: str, commit_truth: bool | None) -> bool | None:
    """The true verdict of ``project`` (``""``: the whole repository) at a commit."""
    if not project or PROJECT_FOLLOWS_CODE.get(project, True):
        return commit_truth
    return True


class QueueHistory(Protocol):
    """What the stack and the invariant checks need of a Queue's repository: commits
    made with a known verdict, their order, and where a ref points."""

    truth: dict[str, bool]

    @property
    def origin(self) -> Path:
        """What the Queue's ``source.repository`` names."""
        ...

    def commit(self, green: bool) -> str: ...

    def ref(self, name: str) -> str | None: ...

    def position(self, sha: str | None) -> int: ...


@dataclass
class QueueRepo:
    """One Queue's repository and the truth about each commit in it.

    The Queue names a bare ``origin``: the extensions resolve, fetch, clone and
    promote there, and nothing writes a working tree or an index they read.
    Commits are made in a working clone and pushed, one at a time (the soak
    pushes from several threads), so ``order`` is the branch's history.
    """

    queue: str
    repo: WorkRepo
    truth: dict[str, bool] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, queue: str, root: Path) -> QueueRepo:
        origin = init_bare(cls.origin_in(root))
        return cls(queue, WorkRepo(root / "work", remote=origin))

    @staticmethod
    def origin_in(root: Path) -> Path:
        """Where :meth:`create` puts the origin of a repository made under ``root``."""
        return root / "origin.git"

    @property
    def origin(self) -> Path:
        """What the Queue's ``source.repository`` names."""
        return self.repo.served

    def commit(self, green: bool) -> str:
        with self._lock:
            self._counter += 1
            body = (_GOOD if green else _BROKEN) + f"# change {self._counter}\n"
            files: dict[str, str | None] = {"src/calc.py": body}
            if self._counter == 1:
                files["tests/test_calc.py"] = _TEST
                files["docs/index.txt"] = "calc adds\n"
            sha = self.repo.commit(files, f"change {self._counter}")
            self.truth[sha] = green
            self.order.append(sha)
            return sha

    def ref(self, name: str) -> str | None:
        """Where branch ``name`` of the origin points (the promotion ref, say), or None."""
        return self.repo.revision(name)

    def position(self, sha: str | None) -> int:
        """Index of ``sha`` in the (linear) history; -1 for none."""
        return self.order.index(sha) if sha in self.order else -1


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    log_start: int = 0
    """Where the current start's output begins in ``log_path`` (every start appends)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    """Held while the child is started or killed: starting takes a while on a loaded
    machine, and without it the keeper and :meth:`FaultStack.bring_up` could both start
    the child, leaving a second process nobody has a handle to (it keeps its consumer
    group share through every later kill)."""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def current_log(self) -> str:
        """What the current (or, once dead, the last) start has written: lines of an
        earlier life say nothing about what this one holds."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log_file:
            log_file.seek(self.log_start)
            return log_file.read().decode(errors="replace")


class FaultStack:
    """Start with :func:`fault_stack`; see the module docstring."""

    def __init__(
        self,
        root: Path,
        postgres: PostgresCluster,
        *,
        queues: int = 2,
        rounds: int = 1,
        sweeper_stale_after_s: float = 4.0,
        kafka: dict[str, Any] | None = None,
        template: str | None = None,
        replicas: int = 1,
        partitions: int = 2,
        noop: NoopExtensions | None = None,
        hooks: bool | None = None,
        projects: bool = False,
    ) -> None:
        """``queues`` Queues per test, ``rounds`` tests (see :meth:`reset`); the database
        is a copy of ``template`` (a migrated one) when given, else migrated here.
        ``replicas`` processes of every stage (named ``worker-<stage>`` when there is
        one, ``worker-<stage>.<n>`` otherwise; :attr:`workers` lists them), on topics
        of ``partitions`` partitions. ``noop`` and ``hooks``: see the module docstring.
        ``projects``: every Queue has :data:`FAULT_PROJECTS` (Phase 2; the reference
        ProjectMapper runs as ``ext-project-mapper``), and every other Queue turns
        ``inherit_unaffected`` off, so ``docs`` gets project-scoped builds there."""
        self.projects = projects
        self.mapper_address = f"127.0.0.1:{free_port()}"
        self.root = root
        self.postgres = postgres
        self.broker = EmbeddedBroker(log_path=root / "logs" / "broker.log")
        self._all_queues = [f"fault/q{i}" for i in range(queues * rounds)]
        self._per_round = queues
        self._round = 0
        self._handed_out = False
        self._template = template
        self.queue_names = self._all_queues[:queues]
        """This round's Queues (see :meth:`reset`)."""
        self.noop = noop
        self.repos: dict[str, QueueHistory] = {}
        self.children: dict[str, Child] = {}
        self.health: dict[str, str] = {}
        """Each worker's health address (``stovepipe worker --health-port``)."""
        self.restarts: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self._held: set[str] = set()
        self._sweeper_stale_after_s = sweeper_stale_after_s
        self._kafka_options = {**GROUP_TIMING, **(kafka or {})}
        self.database_url = ""
        self.api_address = f"127.0.0.1:{free_port()}"
        self.git_address = f"127.0.0.1:{free_port()}"
        self.runner_address = f"127.0.0.1:{free_port()}"
        self.topic_prefix = f"f{uuid.uuid4().hex[:6]}."
        self.partitions = partitions
        self.replicas = replicas
        self.workers: list[str] = []
        """Every worker process's child name, stage by stage."""
        self.hooks = noop is None if hooks is None else hooks
        self.hooks_address = f"127.0.0.1:{free_port()}"
        self.hook_receiver = WebhookReceiver(_hook_secret(), fail_every=3)
        """Where the ``flaky`` subscriptions go (``hold`` it to catch a delivery in flight)."""
        self.git_proxy = ChaosProxy(self.git_address)
        self.runner_proxy = ChaosProxy(self.runner_address)
        self.store: Store | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self.stub: Any = None

    # Start and stop

    async def start(self) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        database = f"faults_{uuid.uuid4().hex[:10]}"
        self.database_url = await asyncio.to_thread(
            self.postgres.create_database, database, template=self._template
        )
        if self._template is None:
            await asyncio.to_thread(upgrade, self.database_url)
        self.store = Store(create_engine(self.database_url))
        await self.broker.start()
        await asyncio.to_thread(self._create_repos, self.queue_names)
        if self.hooks:
            self.hook_receiver.start()
        if self.noop is None:
            await self.git_proxy.start()
            await self.runner_proxy.start()
        config_path = self._write_config()
        cli = [sys.executable, "-m", "stovepipe.cli.main"]
        logs = self.root / "logs"
        if self.noop is None:
            self._add("ext-git", [*cli, "ext", "git", "--listen", self.git_address,
                                  "--cache-dir", str(self.root / "git-cache"),
                                  "--config", str(config_path)], logs)  # fmt: skip
            self._add("ext-runner", [*cli, "ext", "local-runner", "--listen", self.runner_address,
                                     "--source-control", self.git_address,
                                     "--work-dir", str(self.root / "builds")], logs)  # fmt: skip
        if self.hooks:
            self._add("ext-hooks", [*cli, "ext", "hooks", "--listen", self.hooks_address,
                                    "--config", str(config_path)], logs)  # fmt: skip
        if self.projects:
            self._add("ext-project-mapper", [*cli, "ext", "project-mapper",
                                             "--listen", self.mapper_address], logs)  # fmt: skip
        for stage in WORKERS:
            for replica in range(self.replicas):
                name = f"worker-{stage}" if self.replicas == 1 else f"worker-{stage}.{replica}"
                port = free_port()
                self.health[name] = f"127.0.0.1:{port}"
                self.workers.append(name)
                self._add(name, [*cli, "worker", stage, "--config", str(config_path),
                                 "--health-host", "127.0.0.1",
                                 "--health-port", str(port)], logs)  # fmt: skip
        self._add("api", [*cli, "api", "--config", str(config_path)], logs)
        # The servers first, the workers once they serve: thirty-odd workers importing
        # at once (the scale-out test) would starve the API's own start on two cores.
        servers = [c for c in self.children.values() if c.name not in self.workers]
        for child in servers:
            await self._spawn(child)
        for address in self._serving_addresses():
            await self._until_serving(address, START_S)
        for name in self.workers:
            await self._spawn(self.children[name])
        self._channel = open_channel(self.api_address)
        self.stub = pb_grpc.StovepipeServiceStub(self._channel)
        self._keeper = asyncio.create_task(self._keep_alive())

    async def stop(self) -> None:
        """SIGKILL every process (and what it started) at once: a clean stop is not what a
        fault test is about, and waiting for each drain would cost seconds per child."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await asyncio.gather(
            *(kill(c.process) for c in self.children.values() if c.process is not None)
        )
        if self.noop is None:
            await self.git_proxy.stop()
            await self.runner_proxy.stop()
        self.hook_receiver.hold = None
        self.hook_receiver.stop()
        if self._channel is not None:
            await self._channel.close(None)
        if self.store is not None:
            await self.store.close()
        await self.broker.kill()
        if self.database_url:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self.postgres.drop_database, self.database_url.rsplit("/", 1)[1]
                )

    def _write_config(self) -> Path:
        policy = {"max_attempts": 10, "backoff_initial_seconds": 0.2, "backoff_max_seconds": 2}
        data: dict[str, Any] = {
            "storage": {"url": self.database_url},
            "kafka": {
                "bootstrap_servers": self.broker.bootstrap_servers,
                "topic_prefix": self.topic_prefix,
                "partitions": self.partitions,
                **self._kafka_options,
            },
            "api": {"listen": self.api_address},
            "extensions": {
                "sourcecontrol": {"git": {"address": self._extension_addresses()[0]}},
                "buildrunner": {"local": {"address": self._extension_addresses()[1]}},
                **({"hooks": {"webhook": {"address": self.hooks_address}}} if self.hooks else {}),
            },
            "workers": {
                "process": policy,
                "build": policy,
                "buildsignal": policy,
                "record": policy,
                "buildsignal_poll_interval_seconds": 0.2,
                "sweeper_stale_after_seconds": self._sweeper_stale_after_s,
            },
            "queues": [
                {
                    "name": name,
                    "source": {
                        "repository": str(QueueRepo.origin_in(self._repo_root(i))),
                        "ref": "main",
                    },
                    "build": {"targets": fault_targets()},
                    "promotion_ref": "verified-main",
                    "max_concurrent": 1 + i % 2,
                    **({"hooks": self._hook_subscriptions()} if self.hooks else {}),
                }
                for i, name in enumerate(self._all_queues)
            ],
        }
        if self.projects:
            data["extensions"]["projectmapper"] = {"config": {"address": self.mapper_address}}
            for i, queue in enumerate(data["queues"]):
                queue["build"]["targets"].append(DOCS_TARGET)
                queue["projects"] = FAULT_PROJECTS
                queue["inherit_unaffected"] = i % 2 == 0
        path = self.root / "stovepipe.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def _hook_subscriptions(self) -> list[dict[str, Any]]:
        key = self.root / "hooks.whsec"
        if not key.exists():
            key.write_text(self.hook_receiver.secret)
            key.chmod(0o600)
        retries = {"backoff_initial_seconds": 0.2, "backoff_max_seconds": 1.0}
        return [
            {"name": "flaky", "kind": "webhook", "url": self.hook_receiver.url,
             "secret_file": str(key), "events": "all", "max_attempts": 8,
             "timeout_seconds": 30, **retries},
            {"name": "dead", "kind": "webhook", "url": f"http://127.0.0.1:{free_port()}/gone",
             "secret_file": str(key), "events": "transitions", "max_attempts": 2, **retries},
        ]  # fmt: skip

    def _extension_addresses(self) -> tuple[str, str]:
        """Where the workers reach SourceControl and the BuildRunner."""
        if self.noop is not None:
            return self.noop.source_control_address, self.noop.build_runner_address
        return self.git_proxy.address, self.runner_proxy.address

    def _serving_addresses(self) -> list[str]:
        """The gRPC servers the stack waits for: the extensions and the API."""
        hooks = [self.hooks_address] if self.hooks else []
        if self.noop is not None:
            return [*hooks, self.api_address]
        mapper = [self.mapper_address] if self.projects else []
        return [self.git_address, self.runner_address, *hooks, *mapper, self.api_address]

    # Queues, and a fresh start for the next test

    def _repo_root(self, index: int) -> Path:
        return self.root / f"repo{index}"

    def _create_repos(self, names: list[str]) -> None:
        for name in names:
            index = self._all_queues.index(name)
            origin = QueueRepo.origin_in(self._repo_root(index))
            if self.noop is not None:
                self.repos[name] = self.noop.source_control.history(str(origin), queue=name)
            else:
                self.repos[name] = QueueRepo.create(name, self._repo_root(index))

    async def reset(self) -> None:
        """Prepare the stack for the next test as a fresh one would be: every fault lifted,
        every process up, serving and ready, counters at zero, and new Queues.

        ``TimeoutError`` when the stack does not come back healthy; ``RuntimeError`` when
        every round of Queues has been used.
        """
        self.git_proxy.reset()
        self.runner_proxy.reset()
        self._held.clear()
        if not self.broker.running:
            await self.broker.start()
        if not await asyncio.to_thread(lambda: self.postgres.running):
            await asyncio.to_thread(self.postgres.start)
        # nothing is held any more, so the keeper brings back whatever is down
        if self._handed_out:
            self._round += 1
            first = self._round * self._per_round
            if first >= len(self._all_queues):
                raise RuntimeError(f"every round of Queues ({self._round}) is used")
            self.queue_names = self._all_queues[first : first + self._per_round]
            await asyncio.to_thread(self._create_repos, self.queue_names)
        self._handed_out = True
        for address in self._serving_addresses():
            await self._until_serving(address)
        await self.until_ready()
        self.restarts.clear()
        self.faults.clear()

    # Children

    def _add(self, name: str, argv: list[str], logs: Path) -> None:
        self.children[name] = Child(name, argv, logs / f"{name}.log")

    async def _spawn(self, child: Child) -> None:
        child.log_start = child.log_path.stat().st_size if child.log_path.exists() else 0
        with child.log_path.open("ab") as log_file:
            child.process = await asyncio.create_subprocess_exec(
                *child.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        child.starts += 1

    async def _keep_alive(self) -> None:
        """Restart any child that died, as a process supervisor would."""
        while True:
            await asyncio.sleep(0.5)
            for child in self.children.values():
                if child.alive or child.name in self._held or child.lock.locked():
                    continue  # running, held down, or being started or killed right now
                exit_code = child.process and child.process.returncode
                if await self._start_if_down(child):
                    self.restarts[child.name] += 1
                    log.info("restarted %s (exit %s)", child.name, exit_code)

    async def _start_if_down(self, child: Child) -> bool:
        """Start ``child`` unless it runs or is held down; ``True`` if it was started.

        Decided under the child's lock: whoever comes second finds it running.
        """
        async with child.lock:
            if child.alive or child.name in self._held:
                return False
            await self._spawn(child)
            return True

    async def kill(self, name: str) -> None:
        """``kill -9`` the child (and its process group: builds die with the runner)."""
        async with self.children[name].lock:
            await self._kill(name)

    async def _kill(self, name: str) -> None:
        child = self.children[name]
        if child.process is not None:
            await kill(child.process)
        self.faults[f"kill -9 {name}"] += 1

    async def terminate(self, name: str, timeout_s: float = 60.0, *, restart: bool = True) -> int:
        """SIGTERM the child (as an orchestrator would) and return its exit code.

        The keeper starts it again afterwards, as a rolling restart would; with
        ``restart=False`` it stays down until :meth:`bring_up`.
        """
        child = self.children[name]
        process = child.process
        assert process is not None, f"{name} was never started"
        assert process.returncode is None, f"{name} is not running"
        self._held.add(name)
        try:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), timeout_s)
        finally:
            if restart:
                self._held.discard(name)
        self.faults[f"SIGTERM {name}"] += 1
        return code

    async def is_ready(self, name: str) -> bool:
        """The worker is running and its health answers SERVING: its consumers have
        joined their groups (or its runner has started), and it is not draining."""
        return self.children[name].alive and await grpc_serving(self.health[name])

    async def until_ready(self, names: list[str] | None = None, timeout_s: float = 60.0) -> None:
        """Wait until every worker (or those named) is consuming, so work is not re-driven
        as stale while a consumer group is still forming."""
        wanted = names if names is not None else self.workers

        async def ready() -> bool:
            return all([await self.is_ready(name) for name in wanted])

        await self.wait_until(ready, timeout_s, f"{', '.join(wanted)} ready")

    async def take_down(self, name: str) -> None:
        """Kill a child and keep it down until :meth:`bring_up` (a start under way is
        waited for and killed too)."""
        async with self.children[name].lock:
            self._held.add(name)
            await self._kill(name)

    async def bring_up(self, name: str) -> None:
        self._held.discard(name)
        await self._start_if_down(self.children[name])

    async def restart_broker(self, down_s: float = 1.0) -> None:
        """Kill the broker and start an empty one on the same port."""
        await self.broker.kill()
        self.faults["broker killed and restarted empty"] += 1
        await asyncio.sleep(down_s)
        await self.broker.start()

    async def restart_postgres(self, mode: str = "immediate", down_s: float = 1.0) -> None:
        """Stop PostgreSQL (``immediate`` is a crash) and start it again."""
        await asyncio.to_thread(self.postgres.stop, mode)
        self.faults[f"postgres restart ({mode})"] += 1
        await asyncio.sleep(down_s)
        await asyncio.to_thread(self.postgres.start)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.children[name].log_path
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_until(self, check: Any, timeout_s: float, what: str) -> None:
        await until(check, timeout_s=timeout_s, what=what, interval_s=0.1)

    async def _until_serving(self, address: str, timeout_s: float = 60.0) -> None:
        async def serving() -> bool:
            return await grpc_serving(address)

        await self.wait_until(serving, timeout_s, f"{address} serving")

    # The broker, as a foreign client sees it

    @property
    def kafka(self) -> KafkaSettings:
        """Settings naming the stack's physical topics and groups (for raw test clients)."""
        return KafkaSettings(
            bootstrap_servers=self.broker.bootstrap_servers,
            topic_prefix=self.topic_prefix,
            partitions=self.partitions,
        )

    async def produce_raw(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Put bytes on a logical topic past every codec, as a buggy or hostile client would."""
        producer = AIOKafkaProducer(
            **self.kafka.client_kwargs(),
            max_request_size=8 * 1024 * 1024,
            enable_idempotence=False,
        )
        await producer.start()
        try:
            await producer.send_and_wait(
                self.kafka.topic(topic), value, key=key, headers=headers or []
            )
        finally:
            await producer.stop()

    async def records(self, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
        """Every record on a logical topic so far, read without joining a group."""
        consumer = AIOKafkaConsumer(
            **self.kafka.client_kwargs(),
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(self.kafka.topic(topic), p) for p in range(self.partitions)
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            found: list[ConsumerRecord[bytes, bytes]] = []
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batch = await consumer.getmany(timeout_ms=500)
                found += [r for rs in batch.values() for r in rs]
            return found
        finally:
            await consumer.stop()

    async def hook_events(self) -> list[topics_pb2.HookEvent]:
        """Every readable event on ``stovepipe.hook`` so far (unreadable records skipped:
        the dispatcher parks those)."""
        events = []
        for record in await self.records(HOOK):
            event = topics_pb2.HookEvent()
            try:
                event.ParseFromString(record.value or b"")
            except Exception:  # garbage a test put there on purpose
                continue
            events.append(event)
        return events

    async def committed(self, topic: str, group: str) -> dict[int, int]:
        """Consumer group ``group``'s committed offset per partition of ``topic`` (0: none)."""
        consumer = AIOKafkaConsumer(
            **self.kafka.client_kwargs(),
            group_id=self.kafka.group(group),
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            physical = self.kafka.topic(topic)
            return {
                p: await consumer.committed(TopicPartition(physical, p)) or 0
                for p in range(self.partitions)
            }
        finally:
            await consumer.stop()

    async def consumed(self, topic: str, group: str) -> bool:
        """True when consumer group ``group`` has committed past every record of ``topic``."""
        ends = Counter[int]()
        for record in await self.records(topic):
            ends[record.partition] = max(ends[record.partition], record.offset + 1)
        committed = await self.committed(topic, group)
        return all(committed[p] >= end for p, end in ends.items())

    # Work

    async def push_and_ingest(self, queue: str, green: bool, timeout_s: float = 60.0) -> str:
        """Commit on the Queue's branch, report the head, return the Request id.

        Ingest is retried while the API or its database is away, as a poller would.
        """
        sha = await asyncio.to_thread(self.repos[queue].commit, green)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                response = await self.stub.Ingest(
                    pb.IngestRequest(queue=queue, trigger="faults"), timeout=5.0
                )
                request_id: str = response.request_id
                return request_id
            except grpc.aio.AioRpcError as exc:
                if loop.time() > deadline:
                    raise TimeoutError(
                        f"ingest of {sha[:10]} into {queue} kept failing: {exc}"
                    ) from exc
                await asyncio.sleep(0.3)


def _hook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@contextlib.asynccontextmanager
async def fault_stack(
    root: Path, postgres: PostgresCluster, **options: Any
) -> AsyncIterator[FaultStack]:
    stack = FaultStack(root, postgres, **options)
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()
