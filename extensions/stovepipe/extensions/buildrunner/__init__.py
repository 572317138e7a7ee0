"""The BuildRunner extension: contract types, typed client, fake, reference server.

Core depends on ``BuildRunner`` (the Protocol) and gets a ``BuildRunnerClient``
from its wiring; unit tests use ``fake.FakeBuildRunner``; ``local`` is the
reference server that runs targets as local processes.
"""

from stovepipe.extensions.buildrunner.client import BuildRunnerClient
from stovepipe.extensions.buildrunner.contract import BuildRunner
from stovepipe.extensions.buildrunner.errors import (
    BuildNotFound,
    BuildRunnerError,
    InvalidTrigger,
    MalformedReply,
    TargetNotFound,
)
from stovepipe.extensions.buildrunner.model import (
    BuildEnded,
    BuildReport,
    BuildSource,
    BuildState,
    LogChunk,
    QueueSourceLike,
    TargetReport,
    TargetSpec,
    TargetState,
    TriggerSpec,
)

__all__ = [
    "BuildEnded",
    "BuildNotFound",
    "BuildReport",
    "BuildRunner",
    "BuildRunnerClient",
    "BuildRunnerError",
    "BuildSource",
    "BuildState",
    "InvalidTrigger",
    "LogChunk",
    "MalformedReply",
    "QueueSourceLike",
    "TargetNotFound",
    "TargetReport",
    "TargetSpec",
    "TargetState",
    "TriggerSpec",
]
