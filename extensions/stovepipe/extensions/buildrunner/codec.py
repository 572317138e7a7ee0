"""Protobuf <-> model conversions, both directions, for the client and the servicer.

Decoding is strict about enums: an unspecified or unknown state means the peer
broke the contract, which is a ``MalformedReply``, never a guessed state.
"""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from stovepipe.ext.v1 import build_runner_pb2 as pb
from stovepipe.ext.v1 import source_control_pb2 as sc_pb
from stovepipe.extensions.buildrunner.errors import MalformedReply
from stovepipe.extensions.buildrunner.model import (
    BuildEnded,
    BuildReport,
    BuildSource,
    BuildState,
    LogChunk,
    TargetReport,
    TargetSpec,
    TargetState,
    TriggerSpec,
)
from stovepipe.extensions.buildrunner.tracecontext import bounded

_BUILD_STATES: dict[BuildState, pb.BuildState.ValueType] = {
    BuildState.PENDING: pb.BUILD_STATE_PENDING,
    BuildState.RUNNING: pb.BUILD_STATE_RUNNING,
    BuildState.SUCCEEDED: pb.BUILD_STATE_SUCCEEDED,
    BuildState.FAILED: pb.BUILD_STATE_FAILED,
    BuildState.CANCELLED: pb.BUILD_STATE_CANCELLED,
    BuildState.ERRORED: pb.BUILD_STATE_ERRORED,
}
_BUILD_STATES_BACK = {v: k for k, v in _BUILD_STATES.items()}

_TARGET_STATES: dict[TargetState, pb.TargetState.ValueType] = {
    TargetState.PENDING: pb.TARGET_STATE_PENDING,
    TargetState.RUNNING: pb.TARGET_STATE_RUNNING,
    TargetState.SUCCEEDED: pb.TARGET_STATE_SUCCEEDED,
    TargetState.FAILED: pb.TARGET_STATE_FAILED,
    TargetState.SKIPPED: pb.TARGET_STATE_SKIPPED,
    TargetState.TIMED_OUT: pb.TARGET_STATE_TIMED_OUT,
    TargetState.CANCELLED: pb.TARGET_STATE_CANCELLED,
}
_TARGET_STATES_BACK = {v: k for k, v in _TARGET_STATES.items()}


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def _seconds(duration: Duration) -> float:
    return duration.ToNanoseconds() / 1e9


def encode_build_state(state: BuildState) -> pb.BuildState.ValueType:
    return _BUILD_STATES[state]


def decode_build_state(value: pb.BuildState.ValueType) -> BuildState:
    try:
        return _BUILD_STATES_BACK[value]
    except KeyError:
        raise MalformedReply(f"build state {value} is not part of the contract") from None


def _decode_target_state(value: pb.TargetState.ValueType) -> TargetState:
    try:
        return _TARGET_STATES_BACK[value]
    except KeyError:
        raise MalformedReply(f"target state {value} is not part of the contract") from None


def encode_trigger(spec: TriggerSpec) -> pb.TriggerRequest:
    return pb.TriggerRequest(
        source=sc_pb.QueueSource(
            queue=spec.source.queue, repository=spec.source.repository, ref=spec.source.ref
        ),
        base_uri=spec.base_uri,
        head_uri=spec.head_uri,
        project=spec.project,
        targets=[
            pb.BuildTarget(
                name=t.name,
                command=t.command,
                paths=list(t.paths),
                timeout=_duration(t.timeout_seconds) if t.timeout_seconds else None,
                network=t.network,
            )
            for t in spec.targets
        ],
        idempotency_key=spec.idempotency_key,
        head_revision=spec.head_revision,
        changed_paths_known=spec.changed_paths is not None,
        changed_paths=list(spec.changed_paths or ()),
    )


def decode_trigger(request: pb.TriggerRequest) -> TriggerSpec:
    return TriggerSpec(
        source=BuildSource(
            queue=request.source.queue,
            repository=request.source.repository,
            ref=request.source.ref,
        ),
        base_uri=request.base_uri,
        head_uri=request.head_uri,
        project=request.project,
        targets=tuple(
            TargetSpec(
                name=t.name,
                command=t.command,
                paths=tuple(t.paths),
                timeout_seconds=_seconds(t.timeout) if t.HasField("timeout") else None,
                network=t.network,
            )
            for t in request.targets
        ),
        idempotency_key=request.idempotency_key,
        head_revision=request.head_revision,
        changed_paths=tuple(request.changed_paths) if request.changed_paths_known else None,
    )


def encode_report(report: BuildReport) -> pb.StatusResponse:
    return pb.StatusResponse(
        state=encode_build_state(report.state),
        targets=[
            pb.TargetResult(
                name=t.name,
                state=_TARGET_STATES[t.state],
                exit_code=t.exit_code,
                duration=_duration(t.duration_seconds),
                paths=list(t.paths),
            )
            for t in report.targets
        ],
        message=report.message,
    )


def decode_report(response: pb.StatusResponse) -> BuildReport:
    return BuildReport(
        state=decode_build_state(response.state),
        targets=tuple(
            TargetReport(
                name=t.name,
                state=_decode_target_state(t.state),
                exit_code=t.exit_code,
                duration_seconds=_seconds(t.duration),
                paths=tuple(t.paths),
            )
            for t in response.targets
        ),
        message=response.message,
    )


def encode_log(chunk: LogChunk) -> pb.GetLogResponse:
    return pb.GetLogResponse(content=chunk.content, truncated=chunk.truncated)


def decode_log(response: pb.GetLogResponse) -> LogChunk:
    return LogChunk(content=response.content, truncated=response.truncated)


def encode_ended(ended: BuildEnded) -> pb.WatchBuildsResponse:
    return pb.WatchBuildsResponse(
        build_id=ended.build_id,
        state=encode_build_state(ended.state),
        idempotency_key=ended.idempotency_key,
        trace_context=dict(ended.trace_context),
    )


def decode_ended(notice: pb.WatchBuildsResponse) -> BuildEnded:
    return BuildEnded(
        build_id=notice.build_id,
        state=decode_build_state(notice.state),
        idempotency_key=notice.idempotency_key,
        trace_context=bounded(notice.trace_context),
    )
