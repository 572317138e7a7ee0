"""The pieces under the contract: wire conversions, selection, log capping, the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from harness.buildrunner import tree_size
from stovepipe.ext.v1 import build_runner_pb2 as pb
from stovepipe.extensions.buildrunner import (
    BuildReport,
    BuildRunnerClient,
    BuildSource,
    BuildState,
    LogChunk,
    MalformedReply,
    TargetReport,
    TargetSpec,
    TargetState,
    TriggerSpec,
)
from stovepipe.extensions.buildrunner.codec import (
    decode_log,
    decode_report,
    decode_trigger,
    encode_log,
    encode_report,
    encode_trigger,
)
from stovepipe.extensions.buildrunner.fake import FakeBuildRunner, Outcome
from stovepipe.extensions.buildrunner.local.logs import TargetLog
from stovepipe.extensions.buildrunner.local.records import BuildRecord, RecordStore, TargetRecord
from stovepipe.extensions.buildrunner.local.runner import redact
from stovepipe.extensions.buildrunner.selection import should_run
from stovepipe.extensions.buildrunner.servicer import SERVICE_NAME, BuildRunnerServicer
from stovepipe.grpcutil import GrpcServer, open_channel, start_server

SPEC = TriggerSpec(
    source=BuildSource(queue="mono/main", repository="https://example.com/mono.git", ref="main"),
    base_uri="uri-base",
    head_uri="uri-head",
    project="payments",
    targets=(
        TargetSpec(name="unit", command="make test", paths=("src/", "*.py"), timeout_seconds=90.5),
        TargetSpec(name="lint", command="make lint", network=True),
    ),
    idempotency_key="request/mono/main/7#1#payments",
)


def test_trigger_round_trips_through_protobuf() -> None:
    wire = pb.TriggerRequest.FromString(encode_trigger(SPEC).SerializeToString())

    assert decode_trigger(wire) == SPEC
    assert not wire.targets[1].HasField("timeout")


def test_report_and_log_round_trip_through_protobuf() -> None:
    report = BuildReport(
        state=BuildState.FAILED,
        targets=tuple(
            TargetReport(
                name=state.value,
                state=state,
                exit_code=-15 if state is TargetState.TIMED_OUT else 2,
                duration_seconds=1.25,
                paths=("a/",),
            )
            for state in TargetState
        ),
        message="unit failed",
    )
    chunk = LogChunk(content="tail ✓\n", truncated=True)

    assert (
        decode_report(pb.StatusResponse.FromString(encode_report(report).SerializeToString()))
        == report
    )
    assert decode_log(encode_log(chunk)) == chunk


def test_every_state_has_a_wire_value() -> None:
    for state in BuildState:
        assert decode_report(encode_report(BuildReport(state=state))).state is state


def test_unspecified_state_on_the_wire_is_a_malformed_reply() -> None:
    with pytest.raises(MalformedReply):
        decode_report(pb.StatusResponse(state=pb.BUILD_STATE_UNSPECIFIED))
    with pytest.raises(MalformedReply):
        decode_report(
            pb.StatusResponse(
                state=pb.BUILD_STATE_RUNNING,
                targets=[pb.TargetResult(name="t", state=pb.TARGET_STATE_UNSPECIFIED)],
            )
        )


@pytest.mark.parametrize(
    ("paths", "changed", "runs"),
    [
        ((), ["anything"], True),
        (("docs/",), None, True),
        (("docs/",), [], False),
        (("docs/",), ["docs/a.md"], True),
        (("docs/",), ["web/docs/a.md"], True),
        (("/docs/",), ["web/docs/a.md"], False),
        (("*.py",), ["deep/er/x.py"], True),
        (("src/**", "!src/**/*.md"), ["src/README.md"], False),
        (("src/**", "!src/**/*.md"), ["src/README.md", "src/a.c"], True),
    ],
)
def test_target_selection_uses_gitignore_patterns(
    paths: tuple[str, ...], changed: list[str] | None, runs: bool
) -> None:
    assert should_run(TargetSpec(name="t", command="true", paths=paths), changed) is runs


def test_log_tail_never_exceeds_the_limit_nor_splits_a_character() -> None:
    data = ("é" * 10).encode()

    chunk = LogChunk.tail(data, 5)

    assert chunk == LogChunk(content="éé", truncated=True)
    assert LogChunk.tail(b"short", 5) == LogChunk(content="short", truncated=False)
    assert len(LogChunk.tail(b"\xff" * 10, 5).content.encode()) <= 5


def test_target_log_keeps_at_most_twice_the_limit_on_disk(tmp_path: Path) -> None:
    log = TargetLog(tmp_path / "logs" / "0.log", 100)
    for n in range(1000):
        log.write(f"{n:04d}\n".encode())
    log.close()

    chunk = log.read()

    assert tree_size(tmp_path / "logs") <= 200
    assert chunk.truncated
    assert chunk.content.endswith("0998\n0999\n")
    assert len(chunk.content.encode()) <= 100


def test_report_messages_hide_url_credentials_and_stay_short() -> None:
    message = redact(
        "could not clone https://bot:s3cret@git.example.com/x.git\nfatal: " + "x" * 900
    )

    assert "s3cret" not in message
    assert "https://***@git.example.com" in message
    assert "\n" not in message
    assert len(message) <= 500


class _StuckRunner(FakeBuildRunner):
    """Answers ``status`` only when released, to exercise client deadlines."""

    def __init__(self) -> None:
        super().__init__()
        self.release_status = asyncio.Event()

    async def status(self, build_id: str) -> BuildReport:
        await self.release_status.wait()
        return await super().status(build_id)


@pytest.fixture
async def served_fake() -> AsyncIterator[tuple[_StuckRunner, BuildRunnerClient]]:
    fake = _StuckRunner()
    servicer = BuildRunnerServicer(fake)
    server: GrpcServer = await start_server("127.0.0.1:0", [servicer.register], [SERVICE_NAME])
    channel = open_channel(server.address)
    yield fake, BuildRunnerClient(channel, timeout_s=10.0)
    fake.release_status.set()
    await channel.close(None)
    await server.stop(0)


async def test_client_call_past_its_deadline_raises_the_grpc_error_unchanged(
    served_fake: tuple[_StuckRunner, BuildRunnerClient],
) -> None:
    fake, client = served_fake
    build_id = await client.trigger(SPEC)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.status(build_id, timeout_s=0.2)

    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    fake.release_status.set()
    assert (await client.status(build_id)).state is BuildState.SUCCEEDED


async def test_served_fake_keeps_its_status_codes_and_spec(
    served_fake: tuple[_StuckRunner, BuildRunnerClient],
) -> None:
    fake, client = served_fake
    fake.script(
        SPEC.head_uri,
        Outcome.raising(
            grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "busy", None
            )
        ),
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.trigger(SPEC)

    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "busy"
    assert fake.triggers == [SPEC]


RECORD = BuildRecord(
    build_id="build-" + "0123456789abcdef" * 2,
    spec=SPEC,
    state=BuildState.RUNNING,
    message="run again after the runner crashed during it (re-run 1 of 2)",
    targets=(
        TargetRecord(
            state=TargetState.FAILED,
            exit_code=2,
            duration_seconds=1.5,
            log="logs/x/0.log",
            log_truncated=True,
        ),
        TargetRecord(state=TargetState.PENDING),
    ),
    crashes=1,
    stopped=True,
    finished_at=None,
)


def test_a_build_record_round_trips_through_its_file(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records")
    store.directory.mkdir()

    store.save(RECORD)
    store.save(RECORD)

    assert store.load() == [RECORD]
    assert [p.name for p in store.directory.iterdir()] == [f"{RECORD.build_id}.json"]
    assert (store.directory / f"{RECORD.build_id}.json").stat().st_mode & 0o777 == 0o600


def test_torn_and_unreadable_records_are_not_loaded(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "records")
    store.directory.mkdir()
    store.save(RECORD)
    other = "build-" + "f" * 32
    (store.directory / f"{other}.json.tmp").write_text('{"format": 1, "build_id": ')
    (store.directory / f"{other}.json").write_text("not json")
    renamed = "build-" + "e" * 32
    (store.directory / f"{renamed}.json").write_bytes(
        (store.directory / f"{RECORD.build_id}.json").read_bytes()
    )

    assert store.load() == [RECORD]
    assert not (store.directory / f"{other}.json.tmp").exists()
    assert (store.directory / f"{other}.json").exists(), "left for an operator"
    store.remove(RECORD.build_id)
    assert store.load() == []
