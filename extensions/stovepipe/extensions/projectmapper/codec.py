"""Protobuf <-> model for the ProjectMapper contract, both directions in one place."""

from __future__ import annotations

from stovepipe.ext.v1 import build_runner_pb2 as br
from stovepipe.ext.v1 import project_mapper_pb2 as pb
from stovepipe.extensions.projectmapper.model import (
    MapInput,
    ProjectImpact,
    ProjectSpec,
    ProjectVerdict,
    TargetResult,
)

_VERDICTS = {
    ProjectVerdict.GREEN: pb.PROJECT_VERDICT_GREEN,
    ProjectVerdict.BROKEN: pb.PROJECT_VERDICT_BROKEN,
    ProjectVerdict.NOT_YET_KNOWN: pb.PROJECT_VERDICT_NOT_YET_KNOWN,
}
_FROM_VERDICT = {v: k for k, v in _VERDICTS.items()}


def _target_state(state: str) -> br.TargetState.ValueType:
    try:
        return br.TargetState.Value(f"TARGET_STATE_{state.upper()}")
    except ValueError:
        return br.TARGET_STATE_UNSPECIFIED


def _state_name(value: br.TargetState.ValueType) -> str:
    try:
        return br.TargetState.Name(value).removeprefix("TARGET_STATE_").lower()
    except ValueError:
        return "unspecified"


def encode_map(request: MapInput) -> pb.MapRequest:
    return pb.MapRequest(
        queue=request.queue,
        targets=[
            br.TargetResult(name=t.name, state=_target_state(t.state)) for t in request.targets
        ],
        changed_files=list(request.changed_files),
        projects=[
            pb.ProjectSpec(
                name=p.name,
                paths=list(p.paths),
                target_patterns=list(p.target_patterns),
                weight=p.weight,
            )
            for p in request.projects
        ],
    )


def decode_map(request: pb.MapRequest) -> MapInput:
    return MapInput(
        queue=request.queue,
        targets=tuple(
            TargetResult(name=t.name, state=_state_name(t.state)) for t in request.targets
        ),
        changed_files=tuple(request.changed_files),
        projects=tuple(
            ProjectSpec(
                name=p.name,
                paths=tuple(p.paths),
                target_patterns=tuple(p.target_patterns),
                weight=p.weight,
            )
            for p in request.projects
        ),
    )


def encode_impacts(impacts: tuple[ProjectImpact, ...]) -> pb.MapResponse:
    return pb.MapResponse(
        impacts=[
            pb.ProjectImpact(
                project=i.project,
                targets=list(i.targets),
                affected=i.affected,
                verdict=_VERDICTS[i.verdict],
            )
            for i in impacts
        ]
    )


def decode_impacts(response: pb.MapResponse) -> tuple[ProjectImpact, ...]:
    return tuple(
        ProjectImpact(
            project=i.project,
            targets=tuple(i.targets),
            affected=i.affected,
            verdict=_FROM_VERDICT.get(i.verdict, ProjectVerdict.NOT_YET_KNOWN),
        )
        for i in response.impacts
    )
