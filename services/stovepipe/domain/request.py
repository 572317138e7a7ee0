"""Requests: one validation of one head, and its lifecycle.

Every state change goes through :func:`transition`, the one place that knows
which moves are legal. Storage persists the result with a CAS on ``version``.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass
from datetime import datetime
from functools import total_ordering

from stovepipe.domain.errors import IllegalTransition, InvalidInput
from stovepipe.domain.queue_name import validate_queue_name
from stovepipe.domain.trigger import TriggerDetails, UpstreamGreen


class RequestState(enum.StrEnum):
    ACCEPTED = "accepted"
    PROCESSING = "processing"
    ANALYZING = "analyzing"
    """Phase 2: the whole-repository build ended; projects still wait for their facts."""
    SUPERSEDED = "superseded"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {RequestState.SUPERSEDED, RequestState.SUCCEEDED, RequestState.FAILED, RequestState.CANCELLED}
)

# Terminal states have no way out. A re-validation is a new attempt on the same
# Request and is modelled by ``start_new_attempt``, not by leaving a terminal state.
_LEGAL: dict[RequestState, frozenset[RequestState]] = {
    RequestState.ACCEPTED: frozenset(
        {
            RequestState.PROCESSING,
            RequestState.SUPERSEDED,
            RequestState.FAILED,
            RequestState.CANCELLED,
            RequestState.ANALYZING,
        }
    ),
    RequestState.PROCESSING: frozenset(
        {
            RequestState.SUCCEEDED,
            RequestState.FAILED,
            RequestState.CANCELLED,
            RequestState.ANALYZING,
        }
    ),
    # Left only by record, once every project has its fact and the whole fact is written.
    RequestState.ANALYZING: frozenset({RequestState.SUCCEEDED, RequestState.FAILED}),
}


class BuildStrategy(enum.StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


_ID = re.compile(r"request/(?P<queue>.+)/(?P<n>[1-9][0-9]*)")  # fullmatch: no trailing newline


@total_ordering
@dataclass(frozen=True, slots=True)
class RequestId:
    """``request/<queue>/<n>``; ids of one Queue compare by ingest order ``n``."""

    queue: str
    n: int

    def __post_init__(self) -> None:
        validate_queue_name(self.queue)
        if self.n < 1:
            raise InvalidInput(f"request number must be >= 1, got {self.n}")

    @classmethod
    def parse(cls, text: str) -> RequestId:
        match = _ID.fullmatch(text or "")
        if not match:
            raise InvalidInput(
                f"request id {text!r} is malformed; expected 'request/<queue>/<n>' with n >= 1"
            )
        return cls(queue=match["queue"], n=int(match["n"]))

    def __str__(self) -> str:
        return f"request/{self.queue}/{self.n}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, RequestId):
            return NotImplemented
        if other.queue != self.queue:
            raise InvalidInput(
                f"cannot order requests of different queues ({self.queue!r}, {other.queue!r})"
            )
        return self.n < other.n


def is_newer(candidate: str, than: str | None) -> bool:
    """True when request id ``candidate`` was ingested after ``than`` (None is oldest)."""
    if not than:
        return True
    return RequestId.parse(candidate) > RequestId.parse(than)


@dataclass(frozen=True, slots=True)
class Request:
    """A snapshot of one Request as stored; change it only through :func:`transition`."""

    id: str
    queue: str
    uri: str
    state: RequestState
    version: int
    created_at: datetime
    updated_at: datetime
    trigger: str = ""
    build_strategy: BuildStrategy | None = None
    base_uri: str | None = None
    build_id: str | None = None
    reason: str = ""
    attempt: int = 1
    trigger_details: TriggerDetails = ()
    """What the trigger said about itself (the upstream commit, the push delivery)."""
    upstream_greens: tuple[UpstreamGreen, ...] = ()
    """The last green commit of every Queue this one ``depends_on``, read at ingest."""
    title: str = ""
    """The commit's title as SourceControl described it at ingest (empty when it could not)."""
    head_revision: str = ""
    """The VCS-native revision SourceControl gave for ``uri`` at ingest (empty when it
    could not say): handed to the runner in ``Trigger`` so it need not ask again."""

    @property
    def request_id(self) -> RequestId:
        return RequestId.parse(self.id)

    @property
    def terminal(self) -> bool:
        return self.state.terminal


def can_transition(src: RequestState, dst: RequestState) -> bool:
    return dst in _LEGAL.get(src, frozenset())


def transition(
    request: Request,
    to: RequestState,
    *,
    now: datetime,
    reason: str = "",
    build_strategy: BuildStrategy | None = None,
    base_uri: str | None = None,
    build_id: str | None = None,
) -> Request:
    """Return ``request`` moved to ``to`` with ``version + 1``; raise on an illegal move.

    ``build_strategy`` and ``base_uri`` are set once, at admission
    (``accepted -> processing``), and may not be given on any other move.
    """
    if not can_transition(request.state, to):
        raise IllegalTransition(f"{request.id}: {request.state} -> {to} is not a legal transition")
    admitting = request.state is RequestState.ACCEPTED and to is RequestState.PROCESSING
    if admitting and build_strategy is None:
        raise IllegalTransition(f"{request.id}: admission needs a build strategy")
    if not admitting and (build_strategy is not None or base_uri is not None):
        raise IllegalTransition(f"{request.id}: strategy and base are set only at admission")
    if build_strategy is BuildStrategy.INCREMENTAL and not base_uri:
        raise IllegalTransition(f"{request.id}: an incremental build needs a base URI")
    return dataclasses.replace(
        request,
        state=to,
        version=request.version + 1,
        updated_at=now,
        reason=reason or request.reason,
        build_strategy=build_strategy if admitting else request.build_strategy,
        base_uri=base_uri if admitting else request.base_uri,
        build_id=build_id if build_id is not None else request.build_id,
    )


def with_build(request: Request, build_id: str, *, now: datetime) -> Request:
    """Attach the build the runner minted to a ``processing`` Request (version + 1)."""
    if request.state is not RequestState.PROCESSING:
        raise IllegalTransition(f"{request.id}: a build is attached only while processing")
    return dataclasses.replace(
        request, build_id=build_id, version=request.version + 1, updated_at=now
    )


def start_new_attempt(request: Request, *, now: datetime, reason: str) -> Request:
    """Re-open a ``failed`` Request as attempt ``n + 1``, back in ``accepted``.

    This is the one way out of a terminal state, and only ``failed`` has it: a
    fail-closed verdict means "could not find out" and a broken one may be a
    flake, while green is final and superseded/cancelled heads have no verdict
    to question. The build fields are cleared because the new attempt is
    admitted and built from scratch; the old attempt's Build rows and fact stay.
    """
    if request.state is not RequestState.FAILED:
        raise IllegalTransition(
            f"{request.id} is {request.state}; only a failed request can be validated again"
        )
    return dataclasses.replace(
        request,
        state=RequestState.ACCEPTED,
        version=request.version + 1,
        updated_at=now,
        reason=reason,
        attempt=request.attempt + 1,
        build_strategy=None,
        base_uri=None,
        build_id=None,
    )


def start_project_attempt(request: Request, *, now: datetime, reason: str) -> Request:
    """Re-open a ``failed`` Request as attempt ``n + 1`` straight in ``analyzing``.

    Re-validating one project of a commit rebuilds that project only: the
    whole-repository build is not run again, so the Request skips admission and
    takes no build slot. Its build is detached so that analyze cannot answer the
    project from the very build whose verdict is being questioned; the other
    projects' facts are carried into the new attempt by the caller.
    """
    if request.state is not RequestState.FAILED:
        raise IllegalTransition(
            f"{request.id} is {request.state}; only a failed request can be validated again"
        )
    return dataclasses.replace(
        request,
        state=RequestState.ANALYZING,
        version=request.version + 1,
        updated_at=now,
        reason=reason,
        attempt=request.attempt + 1,
        build_id=None,
    )


def settled_state(outcome: RequestState, *, has_projects: bool) -> RequestState:
    """Where a Request goes when its whole-repository build ends with ``outcome``.

    With projects configured a succeeded or failed build is not the end: the
    Request stays in flight (``analyzing``) until every project has its fact,
    and record then settles it from the weighted verdict.
    """
    if has_projects and outcome in (RequestState.SUCCEEDED, RequestState.FAILED):
        return RequestState.ANALYZING
    return outcome
