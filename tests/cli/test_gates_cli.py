"""The gate commands as a deploy job runs them: a subprocess with stdout a pipe, its exit
code read by the job. The API is served over real gRPC on PostgreSQL, with the fake
extensions of the stage harness so a test decides when the pipeline moves."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from harness.stages import REPO, Pipeline, queue_config
from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.extensions.buildrunner.fake import Outcome
from stovepipe.extensions.sourcecontrol import QueueSource
from stovepipe.grpcutil import GrpcServer
from stovepipe.runtime.processes import free_port
from stovepipe.storage import Store, create_engine
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]

Q = "mono/main"
LONG_Q = "mono/long"
LONG_REF = "release/" + "a-very-long-release-branch-name-" * 4 + "end"
CLI = [sys.executable, "-m", "stovepipe.cli.main"]
INGEST_TOKEN = "ingest-token-for-the-cli-test"


@dataclass
class Cli:
    server: GrpcServer
    stub: pb_grpc.StovepipeServiceStub
    pipe: Pipeline
    token_server: GrpcServer

    async def run(
        self, *args: str, tokened: bool = False, api: str | None = None
    ) -> tuple[int, str, str]:
        address = api or (self.token_server.address if tokened else self.server.address)
        env = {**os.environ, "STOVEPIPE_API": address, "CLI_TOKEN": INGEST_TOKEN}
        env.pop("STOVEPIPE_TOKEN", None)
        process = await asyncio.create_subprocess_exec(
            *CLI,
            *args,
            *(["--token-env", "CLI_TOKEN"] if tokened else []),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(process.communicate(), 600)  # a loaded CI box
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    def commit(self, content: str, outcome: Outcome | None = None, queue: str = Q) -> str:
        ref = LONG_REF if queue == LONG_Q else "main"
        commit_id = self.pipe.repo().advance(ref, {"src/a.py": content})
        uri = self.pipe.sc.uri(QueueSource(queue=queue, repository=REPO, ref=ref), commit_id)
        if outcome is not None:
            self.pipe.runner.script(uri, outcome)
        return uri


@pytest.fixture
async def cli(migrated_pg_url: str) -> AsyncIterator[Cli]:
    engine = create_engine(migrated_pg_url)
    store = Store(engine)
    pipe = Pipeline(
        store,
        [
            queue_config(Q),
            queue_config(
                LONG_Q,
                source={"repository": REPO, "ref": LONG_REF},
                promotion_ref="verified-long",
            ),
        ],
    )
    api = StovepipeApi(store, pipe.config, pipe.ingester, pipe.revalidator)
    server = await serve_api(api, "127.0.0.1:0")
    token_server = await serve_api(api, "127.0.0.1:0", tokens={INGEST_TOKEN: "ingest"})
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield Cli(server, pb_grpc.StovepipeServiceStub(channel), pipe, token_server)
    finally:
        await channel.close(None)
        await server.stop(0)
        await token_server.stop(0)
        await engine.dispose()


async def _ingest(cli: Cli, queue: str = Q) -> pb.IngestResponse:
    response: pb.IngestResponse = await cli.stub.Ingest(  # type: ignore[misc]
        pb.IngestRequest(queue=queue)
    )
    return response


def _sha(uri: str) -> str:
    return uri.rpartition("@")[2]


async def test_gate_exit_codes_for_every_answer(cli: Cli) -> None:
    cli.pipe.repo().advance("main", {"src/a.py": "green"})
    green = await _ingest(cli)
    await cli.pipe.drain()
    broken_uri = cli.pipe.sc.uri(
        cli.pipe.source(), cli.pipe.repo().advance("main", {"src/a.py": "broken"})
    )
    cli.pipe.runner.script(broken_uri, Outcome.fail("unit"))
    await _ingest(cli)
    await cli.pipe.drain()
    sha = _sha(green.uri)
    unreachable = f"127.0.0.1:{free_port()}"
    # independent invocations run side by side: each is a fresh interpreter
    runs = await asyncio.gather(
        cli.run("gate", Q, sha[:7]),
        cli.run("gate", Q, _sha(broken_uri)[:9]),
        cli.run("gate", Q, "f" * 40),
        cli.run("gate", Q, "main"),
        cli.run("gate", Q),
        cli.run("gate", "no/such", sha),
        cli.run("gate", Q, sha, "--wait", "--timeout", "soon"),
        cli.run("gate", Q, sha, api=unreachable),
        cli.run("gate", Q, green.uri, "--json"),
    )
    green_run, broken, unknown, not_a_uri, missing, no_queue, bad_timeout, down, as_json = runs
    assert green_run[:2] == (0, f"GREEN: {green.uri} (request/{Q}/1)\n")
    assert broken[0] == 1 and broken[1].startswith(f"NOT GREEN: {broken_uri}")
    assert unknown[0] == 2 and "has not ingested a commit with SHA" in unknown[2]
    assert not_a_uri[0] == 4 and "neither a commit URI" in not_a_uri[2]
    assert missing[0] == 4 and "Missing argument" in missing[2]
    assert no_queue[0] == 4 and "NOT_FOUND" in no_queue[2]
    assert bad_timeout[0] == 4 and "not a duration" in bad_timeout[2]
    assert down[0] == 3 and "could not reach the API" in down[2]
    answer = json.loads(as_json[1])
    assert as_json[0] == 0 and answer["status"] == "GREENNESS_STATUS_RECORDED"
    assert answer["uri"] == green.uri and answer["fact"]["request_id"] == f"request/{Q}/1"


async def test_a_superseded_head_is_not_recorded_and_names_its_successor(cli: Cli) -> None:
    cli.pipe.repo().advance("main", {"src/a.py": "1"})
    first = await _ingest(cli)
    cli.pipe.repo().advance("main", {"src/a.py": "2"})
    second = await _ingest(cli)
    await cli.pipe.drain()
    gated, waited, newer = await asyncio.gather(
        cli.run("gate", Q, first.uri),
        cli.run("status", first.request_id, "--wait", "--timeout", "30s"),
        cli.run("gate", Q, second.uri),
    )
    assert gated[0] == 2 and f"superseded by {second.request_id}" in gated[2]
    assert second.uri in gated[2]
    assert waited[0] == 2 and f"superseded by {second.request_id}" in waited[2]
    assert newer[0] == 0


async def test_gate_wait_blocks_until_recorded_and_times_out_as_not_recorded(cli: Cli) -> None:
    cli.pipe.repo().advance("main", {"src/a.py": "1"})
    ingested = await _ingest(cli)
    code, _, err = await cli.run("gate", Q, _sha(ingested.uri), "--wait", "--timeout", "2s")
    assert code == 2 and "still not recorded after 2s" in err

    waiting = asyncio.create_task(
        cli.run("gate", Q, _sha(ingested.uri), "--wait", "--timeout", "2m")
    )

    async def until_the_wait_has_answered() -> None:
        while True:  # the gate has its first answer once the pipeline may move
            await asyncio.sleep(0.2)
            if waiting.done():
                return
            await cli.pipe.drain()

    await asyncio.wait_for(until_the_wait_has_answered(), 180)
    code, out, err = waiting.result()
    assert code == 0 and out.startswith(f"GREEN: {ingested.uri}"), err


async def test_ingest_wait_with_an_ingest_token_follows_its_request_and_shows_progress(
    cli: Cli,
) -> None:
    broken = cli.commit("x", Outcome.fail("unit"))
    following = asyncio.create_task(cli.run("ingest", Q, "--wait", "--timeout", "2m", tokened=True))

    async def drive() -> None:
        while not following.done():
            await asyncio.sleep(0.2)
            await cli.pipe.drain()

    await asyncio.wait_for(drive(), 180)
    code, out, err = following.result()
    assert code == 1, err
    assert f"request/{Q}/1  failed" in out and broken in out
    assert "accepted" in err and "processing" in err and "failed" in err
    code, _, err = await cli.run("gate", Q, broken, tokened=True)
    assert code == 3 and "PERMISSION_DENIED" in err  # an ingest token reads no verdicts


async def test_last_green_prints_a_long_uri_alone_on_one_line_in_a_pipe(cli: Cli) -> None:
    cli.pipe.repo().advance(LONG_REF, {"src/a.py": "1"})
    ingested = await _ingest(cli, LONG_Q)
    await cli.pipe.drain()
    assert len(ingested.uri) > 160  # twice what a terminal would wrap at
    plain, as_json, none = await asyncio.gather(
        cli.run("last-green", LONG_Q),
        cli.run("last-green", LONG_Q, "--json"),
        cli.run("last-green", Q),
    )
    assert plain[:2] == (0, ingested.uri + "\n")
    code, _, _ = await cli.run("gate", LONG_Q, plain[1].strip())
    assert code == 0
    assert json.loads(as_json[1])["uri"] == ingested.uri
    assert json.loads(as_json[1])["reachable"] == "REACHABILITY_ON_BRANCH"
    assert none[0] == 2 and none[1] == "" and "no green commit" in none[2]


async def test_last_green_warns_off_branch_and_on_branch_picks_a_reachable_one(cli: Cli) -> None:
    repo = cli.pipe.repo()
    repo.advance("main", {"src/a.py": "kept"})
    kept = await _ingest(cli)
    await cli.pipe.drain()
    repo.advance("main", {"src/a.py": "dropped"})
    dropped = await _ingest(cli)
    await cli.pipe.drain()
    repo.force_push("main", _sha(kept.uri))
    repo.advance("main", {"src/b.py": "rewritten"})
    plain, on_branch = await asyncio.gather(
        cli.run("last-green", Q), cli.run("last-green", Q, "--on-branch")
    )
    assert plain[:2] == (0, dropped.uri + "\n") and "no longer reachable" in plain[2]
    assert on_branch[:2] == (0, kept.uri + "\n")


async def test_status_history_and_queues_read_as_text_and_json(cli: Cli) -> None:
    cli.pipe.repo().advance("main", {"src/a.py": "1"}, title="fix the parser")
    first = await _ingest(cli)
    await cli.pipe.drain()
    cli.pipe.repo().advance("main", {"src/a.py": "2"}, title="token=hunter2 leaked in a title")
    second = await _ingest(cli)

    (
        status,
        status_json,
        not_an_id,
        history,
        history_json,
        queues,
        queues_json,
    ) = await asyncio.gather(
        cli.run("status", first.request_id),
        cli.run("status", Q, _sha(first.uri)[:10], "--json"),
        cli.run("status", "not-a-request"),
        cli.run("history", Q),
        cli.run("history", Q, "--limit", "1", "--json"),
        cli.run("queues"),
        cli.run("queues", "--json"),
    )
    code, out, _ = status
    assert code == 0 and "history" in out
    assert [row.split()[2] for row in out.splitlines() if row.startswith("    ")] == [
        "accepted",
        "processing",
        "succeeded",
    ]
    shown = json.loads(status_json[1])
    assert status_json[0] == 0 and shown["id"] == first.request_id
    assert len(shown["transitions"]) == 3
    assert not_an_id[0] == 4 and "status QUEUE COMMIT" in not_an_id[2]

    rows = [line.split("\t") for line in history[1].splitlines()]
    assert history[0] == 0 and [r[0] for r in rows] == [second.request_id, first.request_id]
    assert rows[0][5] == "accepted" and rows[1][5] == "succeeded" and rows[1][6] == "green"
    assert rows[1][1] == first.uri  # in a pipe the whole URI, never shortened
    # the title SourceControl gave at ingest, redacted like every other stored text
    assert rows[1][2] == "fix the parser"
    assert "hunter2" not in history[1] and rows[0][2].endswith("leaked in a title")
    entries = json.loads(history_json[1])["entries"]
    assert [e["request"]["id"] for e in entries] == [second.request_id]
    assert entries[0]["request"]["title"] == rows[0][2]

    by_queue = {line.split("\t")[0]: line.split("\t") for line in queues[1].splitlines()}
    assert queues[0] == 0 and by_queue[Q][1] == first.uri and by_queue[Q][4] == "1"
    assert by_queue[LONG_Q][1] == "-"
    assert {q["queue"] for q in json.loads(queues_json[1])["queues"]} == {Q, LONG_Q}


async def test_help_lists_the_exit_codes_and_shows_no_type_tags(cli: Cli) -> None:
    commands = ("gate", "up")
    helps = await asyncio.gather(*(cli.run(command, "--help") for command in commands))
    for command, (code, out, _) in zip(commands, helps, strict=True):
        assert code == 0
        assert "<bool>" not in out and "<str>" not in out and "<float>" not in out, command
    gate_help = " ".join(helps[0][1].split())
    assert "4 invalid input or usage" in gate_help and "2 not recorded" in gate_help
    code, out, _ = await cli.run("--version")
    assert code == 0 and out.strip()[0].isdigit()
