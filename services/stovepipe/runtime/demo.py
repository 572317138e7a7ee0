"""``stovepipe demo``: the README's main job.

Creates a sample repository (green, broken, fixed), starts the embedded stack
on it, reports each head the way a poller would, waits for each verdict with a
progress display, and prints commit → greenness and the last green commit.
Exit code 0 only when every verdict is the one the sample history implies.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from stovepipe.config import StovepipeConfig, config_from_mapping
from stovepipe.runtime.embedded import RunningStack, embedded_stack
from stovepipe.runtime.processes import free_port
from stovepipe.runtime.sample_repo import STEPS, SampleRepo, Step, build_targets
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import types_pb2

QUEUE = "demo/main"
PROMOTION_REF = "verified-main"
VERDICT_TIMEOUT_S = 180.0

_TERMINAL = {
    types_pb2.REQUEST_STATE_SUPERSEDED,
    types_pb2.REQUEST_STATE_SUCCEEDED,
    types_pb2.REQUEST_STATE_FAILED,
    types_pb2.REQUEST_STATE_CANCELLED,
}


@dataclass
class Row:
    sha: str
    title: str
    expect_green: bool
    request: types_pb2.Request | None = None
    greenness: pb.GetGreennessResponse | None = None


DEMO_PROJECTS = (
    {"name": "calc", "paths": ["src/**", "tests/**"], "targets": ["unit-tests"]},
    {"name": "docs", "paths": ["README.md"], "targets": ["docs"]},
)
DEMO_HOOK = "audit-log"


def demo_config(repo: Path, api_port: int, *, showcase: bool = False) -> StovepipeConfig:
    """The demo's Queue. ``showcase`` (the console's browser tests and screenshot) adds
    two projects, so the grid has project columns, and a ``log`` hook subscription, so
    commits have hook deliveries to show."""
    queue: dict[str, Any] = {
        "name": QUEUE,
        "source": {"repository": str(repo), "ref": "main"},
        "build": {"targets": build_targets()},
        "promotion_ref": PROMOTION_REF,
    }
    if showcase:
        queue["projects"] = [dict(p) for p in DEMO_PROJECTS]
        queue["hooks"] = [{"name": DEMO_HOOK, "kind": "log"}]
    return config_from_mapping(
        {
            "api": {"listen": f"127.0.0.1:{api_port}"},
            "workers": {"buildsignal_poll_interval_seconds": 0.2},
            "queues": [queue],
        },
        source="demo",
    )


async def _verdict_visible(stub: Any, request: types_pb2.Request) -> bool:
    """A settled Request's fact is written by record a moment after it turns terminal."""
    if request.state not in (types_pb2.REQUEST_STATE_SUCCEEDED, types_pb2.REQUEST_STATE_FAILED):
        return True
    greenness = await stub.GetGreenness(pb.GetGreennessRequest(queue=QUEUE, uri=request.uri))
    return bool(greenness.status == pb.GREENNESS_STATUS_RECORDED)


async def _wait_promoted(repo: SampleRepo, sha: str, timeout_s: float = 30.0) -> None:
    """Promotion follows the bookmark; give it a bounded moment before reporting."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if repo.ref(PROMOTION_REF) == sha:
            return
        await asyncio.sleep(0.05)


async def _wait_terminal(
    stub: Any, request_id: str, progress: Progress, task: TaskID
) -> types_pb2.Request:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + VERDICT_TIMEOUT_S
    while True:
        request: types_pb2.Request = (
            await stub.GetRequest(pb.GetRequestRequest(request_id=request_id))
        ).request
        state = types_pb2.RequestState.Name(request.state).removeprefix("REQUEST_STATE_").lower()
        progress.update(task, description=f"{request_id}: {state}")
        if request.state in _TERMINAL and await _verdict_visible(stub, request):
            return request
        if loop.time() > deadline:
            raise TimeoutError(f"{request_id} still {state} after {VERDICT_TIMEOUT_S:.0f}s")
        await asyncio.sleep(0.1)


async def run_demo(keep: bool = False, console: Console | None = None) -> int:
    console = console or Console()
    workdir = Path(tempfile.mkdtemp(prefix="stovepipe-demo-"))
    try:
        repo = SampleRepo(workdir / "repo").init()
        config = demo_config(repo.path, free_port())
        console.print(f"[bold]Stovepipe demo[/bold] in {workdir}")
        rows: list[Row] = []
        sandbox = shutil.which("bwrap") is not None
        if not sandbox:
            console.print(
                "[yellow]bubblewrap is not installed: the demo's own sample code runs without "
                "the build sandbox (`stovepipe up` refuses that for your code; install it with "
                "apt-get install bubblewrap)[/yellow]"
            )
        async with embedded_stack(config, workdir / "state", console, sandbox=sandbox) as stack:
            console.print(stack.table())
            async with grpc.aio.insecure_channel(stack.api_address) as channel:
                stub: Any = pb_grpc.StovepipeServiceStub(channel)
                with Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TextColumn("{task.completed}/{task.total} commits"),
                    TimeElapsedColumn(),
                    console=console,
                ) as progress:
                    overall = progress.add_task("validating", total=len(STEPS))
                    for step in STEPS:
                        sha = repo.commit(step)
                        row = Row(sha, step.title, step.expect_green)
                        rows.append(row)
                        ingest = await stub.Ingest(pb.IngestRequest(queue=QUEUE, trigger="demo"))
                        row.request = await _wait_terminal(
                            stub, ingest.request_id, progress, overall
                        )
                        row.greenness = await stub.GetGreenness(
                            pb.GetGreennessRequest(queue=QUEUE, uri=ingest.uri)
                        )
                        progress.advance(overall)
                last_green = await stub.GetLastGreen(pb.GetLastGreenRequest(queue=QUEUE))
                if last_green.found:
                    await _wait_promoted(repo, last_green.uri.rsplit("@", 1)[-1])
        return _report(console, rows, last_green, repo)
    finally:
        if keep:
            console.print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _report(
    console: Console, rows: list[Row], last_green: pb.GetLastGreenResponse, repo: SampleRepo
) -> int:
    table = Table(title=f"greenness of {QUEUE}")
    for column in ("commit", "title", "request", "strategy", "greenness", "origin"):
        table.add_column(column)
    ok = True
    for row in rows:
        request, greenness = row.request, row.greenness
        assert request is not None
        assert greenness is not None
        strategy = types_pb2.BuildStrategy.Name(request.build_strategy)
        if greenness.status == pb.GREENNESS_STATUS_RECORDED:
            green = greenness.fact.degree == 0.0
            verdict = (
                "[green]green[/green]"
                if green
                else f"[red]broken ({greenness.fact.degree:g})[/red]"
            )
            origin = types_pb2.FactOrigin.Name(greenness.fact.origin).removeprefix("FACT_ORIGIN_")
        else:
            green, verdict, origin = False, "[yellow]not recorded[/yellow]", "-"
        ok &= green == row.expect_green
        table.add_row(
            row.sha[:10],
            row.title,
            request.id,
            strategy.removeprefix("BUILD_STRATEGY_").lower(),
            verdict,
            origin.lower(),
        )
    console.print(table)
    promoted = repo.ref(PROMOTION_REF)
    if last_green.found:
        sha = last_green.uri.rsplit("@", 1)[-1]
        console.print(f"last green commit: [bold]{sha[:10]}[/bold] ({last_green.request_id})")
        console.print(f"{PROMOTION_REF} -> {promoted[:10] if promoted else '(not set)'}")
        ok &= promoted == sha == rows[-1].sha
    else:
        console.print("[red]no green commit recorded[/red]")
        ok = False
    console.print(
        "[green]demo OK[/green]" if ok else "[red]demo verdicts differ from expected[/red]"
    )
    return 0 if ok else 1


@dataclass
class DemoHistory:
    """The demo's stack with its sample history validated, for the console's browser tests
    and README screenshot."""

    stack: RunningStack
    repo: SampleRepo
    stub: Any
    rows: list[Row]

    async def validate(self, step: Step) -> Row:
        """Commit ``step``, report it, and wait until its verdict is recorded."""
        sha = self.repo.commit(step)
        ingest = await self.stub.Ingest(pb.IngestRequest(queue=QUEUE, trigger="demo"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + VERDICT_TIMEOUT_S
        while True:
            request = (
                await self.stub.GetRequest(pb.GetRequestRequest(request_id=ingest.request_id))
            ).request
            if request.state in _TERMINAL and await _verdict_visible(self.stub, request):
                break
            if loop.time() > deadline:
                raise TimeoutError(f"{ingest.request_id} has no verdict after {VERDICT_TIMEOUT_S}s")
            await asyncio.sleep(0.1)
        row = Row(sha, step.title, step.expect_green, request)
        row.greenness = await self.stub.GetGreenness(
            pb.GetGreennessRequest(queue=QUEUE, uri=ingest.uri)
        )
        self.rows.append(row)
        return row


@asynccontextmanager
async def demo_history(workdir: Path, *, sandbox: bool = True) -> AsyncIterator[DemoHistory]:
    """``stovepipe up`` on the demo's sample repository (with the showcase's projects and
    hook subscription) with its three commits validated."""
    repo = SampleRepo(workdir / "repo").init()
    config = demo_config(repo.path, free_port(), showcase=True)
    async with (
        embedded_stack(config, workdir / "state", Console(quiet=True), sandbox=sandbox) as stack,
        grpc.aio.insecure_channel(stack.api_address) as channel,
    ):
        history = DemoHistory(stack, repo, pb_grpc.StovepipeServiceStub(channel), [])
        for step in STEPS:
            await history.validate(step)
        yield history
