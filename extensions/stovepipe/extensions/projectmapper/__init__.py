"""The ProjectMapper extension contract: model, typed client, in-process fake and the
config-driven reference server (``stovepipe ext project-mapper``)."""

from stovepipe.extensions.projectmapper.contract import ProjectMapper
from stovepipe.extensions.projectmapper.model import (
    MapInput,
    ProjectImpact,
    ProjectSpec,
    ProjectVerdict,
    TargetResult,
)

__all__ = [
    "MapInput",
    "ProjectImpact",
    "ProjectMapper",
    "ProjectSpec",
    "ProjectVerdict",
    "TargetResult",
]
