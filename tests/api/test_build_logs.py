"""Kept logs of failed targets: captured redacted and bounded when a build fails, served
by GetBuildLog over real gRPC (both backends), pruned by the retention setting."""

from __future__ import annotations

from datetime import timedelta

import grpc

from harness.api import Q, ServedApi, status_of
from stovepipe.extensions.buildrunner.fake import Outcome, TargetScript
from stovepipe.extensions.buildrunner.model import TargetState
from stovepipe.runtime.log_retention import prune_once
from stovepipe.storage.build_logs import MAX_LOG_CHARS
from stovepipe.v1 import stovepipe_service_pb2 as pb

SECRET = "s3cr3t-do-not-show"


async def _failed_request(served: ServedApi, log: str) -> tuple[str, str]:
    pipe = served.pipe
    uri = pipe.sc.uri(pipe.source(Q), pipe.repo().advance("main", {"src/a.py": "x"}))
    pipe.runner.script(
        uri,
        Outcome(targets={"unit": TargetScript(state=TargetState.FAILED, exit_code=3, log=log)}),
    )
    request_id = (await pipe.ingester.ingest(Q, "test")).request.id
    await pipe.drain()
    return request_id, uri


async def test_a_failed_target_log_is_kept_redacted_and_bounded(served: ServedApi) -> None:
    long_log = "".join(f"line {n} of noise\n" for n in range(8000))  # > 64 KiB
    log = long_log + f"connecting with token={SECRET}\nerror: test_add failed\n"
    request_id, _ = await _failed_request(served, log)
    response = await served.stub.GetBuildLog(pb.GetBuildLogRequest(request_id=request_id))
    (entry,) = response.logs
    assert entry.target == "unit" and entry.attempt == 1 and entry.build_id
    assert entry.truncated and len(entry.content) <= MAX_LOG_CHARS
    assert entry.content.endswith("error: test_add failed\n")
    assert SECRET not in entry.content and "token=***" in entry.content
    assert entry.content.startswith("line ")  # cut at a line start
    request = (await served.stub.GetRequest(pb.GetRequestRequest(request_id=request_id))).request
    assert "target unit (exit 3) failed" in request.reason
    only = await served.stub.GetBuildLog(
        pb.GetBuildLogRequest(request_id=request_id, target="docs")
    )
    assert list(only.logs) == []


async def test_green_builds_keep_no_logs_and_unknown_requests_are_refused(
    served: ServedApi,
) -> None:
    pipe = served.pipe
    pipe.repo().advance("main", {"src/a.py": "green"})
    request_id = (await pipe.ingester.ingest(Q, "test")).request.id
    await pipe.drain()
    response = await served.stub.GetBuildLog(pb.GetBuildLogRequest(request_id=request_id))
    assert list(response.logs) == []
    missing = await status_of(
        served.stub.GetBuildLog(pb.GetBuildLogRequest(request_id=f"request/{Q}/999"))
    )
    assert missing.code() is grpc.StatusCode.NOT_FOUND
    malformed = await status_of(
        served.stub.GetBuildLog(pb.GetBuildLogRequest(request_id="nonsense"))
    )
    assert malformed.code() is grpc.StatusCode.INVALID_ARGUMENT
    oversized = await status_of(
        served.stub.GetBuildLog(pb.GetBuildLogRequest(request_id=request_id, target="t" * 300))
    )
    assert oversized.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_logs_older_than_the_retention_are_pruned(served: ServedApi) -> None:
    old_id, _ = await _failed_request(served, "old failure\n")
    kept = await served.store.list_build_logs(old_id)
    assert len(kept) == 1
    created = kept[0].created_at
    assert await prune_once(served.store, 14, clock=lambda: created + timedelta(days=13)) == 0
    assert await prune_once(served.store, 14, clock=lambda: created + timedelta(days=15)) == 1
    response = await served.stub.GetBuildLog(pb.GetBuildLogRequest(request_id=old_id))
    assert list(response.logs) == []
