"""The domain model: Queues, Requests, Builds and ValidationFacts, free of I/O."""

from stovepipe.domain.build import Build, BuildStatus, TargetOutcome
from stovepipe.domain.errors import (
    IllegalTransition,
    InvalidInput,
    InvalidQueueName,
    NotFound,
    Refused,
    StovepipeError,
)
from stovepipe.domain.fact import (
    BROKEN,
    GREEN,
    WHOLE_REPO,
    FactOrigin,
    ValidationFact,
    authoritative,
    outranks,
)
from stovepipe.domain.project import ProjectBookmark
from stovepipe.domain.queue import QueueState
from stovepipe.domain.queue_name import MAX_QUEUE_NAME_LENGTH, validate_queue_name
from stovepipe.domain.request import (
    TERMINAL_STATES,
    BuildStrategy,
    Request,
    RequestId,
    RequestState,
    can_transition,
    is_newer,
    settled_state,
    start_new_attempt,
    start_project_attempt,
    transition,
    with_build,
)
from stovepipe.domain.trigger import TriggerKind, UpstreamGreen

__all__ = [
    "BROKEN",
    "GREEN",
    "MAX_QUEUE_NAME_LENGTH",
    "TERMINAL_STATES",
    "WHOLE_REPO",
    "Build",
    "BuildStatus",
    "BuildStrategy",
    "FactOrigin",
    "IllegalTransition",
    "InvalidInput",
    "InvalidQueueName",
    "NotFound",
    "ProjectBookmark",
    "QueueState",
    "Refused",
    "Request",
    "RequestId",
    "RequestState",
    "StovepipeError",
    "TargetOutcome",
    "TriggerKind",
    "UpstreamGreen",
    "ValidationFact",
    "authoritative",
    "can_transition",
    "is_newer",
    "outranks",
    "settled_state",
    "start_new_attempt",
    "start_project_attempt",
    "transition",
    "validate_queue_name",
    "with_build",
]
