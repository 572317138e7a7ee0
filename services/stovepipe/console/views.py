"""What each page shows, computed from API answers: cell states, rows, Queue summaries.

Kept apart from the HTTP layer so the rules (which colour a commit gets, what
"commits since last green" counts) are plain functions over protobuf messages.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stovepipe.console.client import ConsoleClient
from stovepipe.hooks.events import BECAME_BROKEN, BECAME_GREEN, VERDICT_RECORDED, event_id
from stovepipe.redaction import redact
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import types_pb2

GREEN = "green"
BROKEN = "broken"
FAIL_CLOSED = "fail-closed"
SUPERSEDED = "superseded"
RUNNING = "running"
WAITING = "waiting"
CANCELLED = "cancelled"
NOT_RECORDED = "not-recorded"

STATE_LABELS = {
    GREEN: "green",
    BROKEN: "broken",
    FAIL_CLOSED: "fail-closed",
    SUPERSEDED: "superseded",
    RUNNING: "running",
    WAITING: "waiting",
    CANCELLED: "cancelled",
    NOT_RECORDED: "not recorded",
}


def fact_state(fact: types_pb2.ValidationFact) -> str:
    """Green only for a recorded degree of 0; a fail-closed verdict is told apart."""
    if fact.origin == types_pb2.FACT_ORIGIN_FAIL_CLOSED:
        return FAIL_CLOSED
    return GREEN if fact.degree == 0.0 else BROKEN


@dataclass
class Cell:
    state: str
    fact: types_pb2.ValidationFact | None = None
    shown: str = ""
    """A label other than the state's own (an in-flight state this console has no
    colour for)."""

    @property
    def label(self) -> str:
        if self.shown:
            return self.shown
        if self.fact is not None and self.state == BROKEN and 0 < self.fact.degree < 1:
            return f"broken ({self.fact.degree:g})"
        if self.fact is not None and self.fact.origin == types_pb2.FACT_ORIGIN_INHERITED:
            return f"{STATE_LABELS[self.state]} (inherited)"
        return STATE_LABELS[self.state]


_REQUEST_CELLS = {
    "ACCEPTED": WAITING,
    "PROCESSING": RUNNING,
    "ANALYZING": RUNNING,
    "SUPERSEDED": SUPERSEDED,
    "CANCELLED": CANCELLED,
    "SUCCEEDED": NOT_RECORDED,
    "FAILED": NOT_RECORDED,
}


def request_state_name(value: int) -> str:
    """``accepted``, ``processing``, ... (a state newer than these stubs: its number)."""
    try:
        name = str(types_pb2.RequestState.Name(value))  # type: ignore[arg-type]
    except ValueError:
        return f"state {value}"
    return name.removeprefix("REQUEST_STATE_").lower().replace("_", " ")


def request_cell(request: types_pb2.Request) -> Cell:
    """The cell of a commit that has no verdict in a scope (absence is never green).

    A finished Request without a fact in the scope is "not recorded" (the scope
    was not validated, or its fact is being written); a state this console does
    not know (a newer in-flight stage) is shown by its name, coloured as running.
    """
    state = _REQUEST_CELLS.get(request_state_name(request.state).upper())
    if state is None:
        return Cell(RUNNING, shown=request_state_name(request.state))
    return Cell(state)


def request_state(request: types_pb2.Request) -> str:
    return request_cell(request).state


def short(uri: str) -> str:
    """The first 10 characters of the commit id at the end of an opaque URI."""
    return uri.rsplit("@", 1)[-1].rsplit("/", 1)[-1][:10]


def age(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def stamp(ts: object) -> datetime | None:
    """A protobuf Timestamp as an aware datetime; None when unset."""
    seconds = getattr(ts, "seconds", 0)
    nanos = getattr(ts, "nanos", 0)
    if not seconds and not nanos:
        return None
    return datetime.fromtimestamp(seconds + nanos / 1e9, UTC)


@dataclass
class Row:
    """One commit of a Queue: its Request, one cell per column, the refs that point at it."""

    uri: str
    request_id: str
    title: str
    trigger: str
    when: datetime | None
    cells: dict[str, Cell] = field(default_factory=dict)
    marks: list[str] = field(default_factory=list)

    @property
    def short(self) -> str:
        return short(self.uri)


@dataclass
class Grid:
    queue: str
    columns: list[str]
    rows: list[Row]
    next_token: str
    last_green: str
    promotion_ref: str | None
    promoted_uri: str


REPO = ""
"""The whole-repository column's project name."""


def _cell(entry: pb.HistoryEntry) -> Cell:
    if entry.HasField("fact"):
        return Cell(fact_state(entry.fact), entry.fact)
    return request_cell(entry.request)


async def grid(
    client: ConsoleClient,
    queue: str,
    *,
    projects: list[str],
    promotion_ref: str | None,
    page_size: int,
    page_token: str = "",
) -> Grid:
    """One page of a Queue's history, newest first: one ``ListRequests`` page per column
    (the whole repository, then each project) with the same page token, and the Queue's
    summary for its bookmark and where its promotion ref points.

    Every Request is one row, so superseded, cancelled, waiting and running commits
    appear where they were ingested. The page of the whole-repository column decides
    the rows; a Request that a project's page does not have (ingested between the
    calls) shows "not recorded" in that column until the next refresh.
    """
    columns = [REPO, *[p for p in projects if p != REPO]]
    pages = await asyncio.gather(
        *(
            client.list_requests(queue, project=p, page_size=page_size, page_token=page_token)
            for p in columns
        )
    )
    summary = (await client.list_queues()).get(queue)
    last_green = summary.last_green_uri if summary is not None else ""
    promoted = summary.promoted_uri if summary is not None else ""
    by_scope = {
        column: {e.request.id: e for e in page.entries}
        for column, page in zip(columns, pages, strict=True)
    }
    rows: list[Row] = []
    for entry in pages[0].entries:
        r = entry.request
        row = Row(r.uri, r.id, r.title, r.trigger, stamp(r.created_at))
        for column in columns:
            found = by_scope[column].get(r.id)
            row.cells[column] = _cell(found) if found is not None else Cell(NOT_RECORDED)
        if last_green and r.uri == last_green:
            row.marks.append("last green")
        if promotion_ref and promoted and r.uri == promoted:
            row.marks.append(f"promotes {promotion_ref}")
        rows.append(row)
    return Grid(queue, columns, rows, pages[0].next_token, last_green, promotion_ref, promoted)


@dataclass
class QueueSummary:
    name: str
    last_green_uri: str
    last_green_title: str
    last_green_when: datetime | None
    since_last_green: int
    since_more: bool
    in_flight: int
    waiting: int
    state: str
    stale: bool
    newest: str


async def summaries(
    client: ConsoleClient, names: list[str], *, window: int = 50
) -> list[QueueSummary]:
    """Every Queue at a glance: ``ListQueues`` once, and the newest ``window`` Requests
    of each Queue to count the commits after the last green one and find its title."""
    known = await client.list_queues()
    return list(
        await asyncio.gather(
            *(summary(client, name, known.get(name), window=window) for name in names)
        )
    )


async def summary(
    client: ConsoleClient, queue: str, known: pb.QueueSummary | None, *, window: int = 50
) -> QueueSummary:
    """``state`` is ``green`` when the newest commit is the last green one, ``broken``
    or ``fail-closed`` when the newest verdict is not green, ``pending`` when commits
    after the last green one are still being validated, and ``not-recorded`` before
    any verdict."""
    page = await client.list_requests(queue, page_size=window)
    entries = page.entries
    last_green = known.last_green_uri if known is not None else ""
    since = 0
    title = ""
    for entry in entries:
        if last_green and entry.request.uri == last_green:
            title = entry.request.title
            break
        since += 1
    if last_green and not title and known is not None and since == len(entries):
        found = await client.request(known.last_green_request_id)
        title = found.title if found is not None else ""
    recorded = [e.fact for e in entries if e.HasField("fact")]
    if not recorded:
        state = NOT_RECORDED
    elif entries and entries[0].request.uri == last_green:
        state = GREEN
    elif fact_state(recorded[0]) != GREEN:
        state = fact_state(recorded[0])
    else:
        state = "pending"
    return QueueSummary(
        name=queue,
        last_green_uri=last_green,
        last_green_title=title,
        last_green_when=stamp(known.last_green_at) if known is not None else None,
        since_last_green=since,
        since_more=bool(last_green) and since == len(entries) and bool(page.next_token),
        in_flight=known.in_flight if known is not None else 0,
        waiting=known.waiting if known is not None else 0,
        state=state,
        stale=bool(known is not None and known.stale),
        newest=entries[0].request.uri if entries else "",
    )


EXCERPT_LINES = 40
EXCERPT_CHARS = 6_000
MAX_DELIVERY_LOOKUPS = 64
"""Hook deliveries looked up per commit page (facts x event types x subscriptions)."""
EVENT_TYPES = (VERDICT_RECORDED, BECAME_GREEN, BECAME_BROKEN)


@dataclass(frozen=True)
class TargetResult:
    """A failed target of one attempt, with the end of its (redacted) log."""

    request_id: str
    attempt: int
    target: str
    build_id: str
    excerpt: str
    cut: bool
    when: datetime | None


def excerpt(content: str) -> tuple[str, bool]:
    """The last ``EXCERPT_LINES`` lines (at most ``EXCERPT_CHARS``), redacted again here
    so the page never depends on the server having done it; True when cut."""
    lines = content.rstrip("\n").splitlines()
    tail = "\n".join(lines[-EXCERPT_LINES:])
    cut = len(lines) > EXCERPT_LINES
    if len(tail) > EXCERPT_CHARS:
        tail, cut = tail[-EXCERPT_CHARS:], True
    return redact(tail), cut


@dataclass
class CommitView:
    queue: str
    uri: str
    recorded: bool
    columns: list[str]
    attempts: list[types_pb2.ValidationFact]
    requests: list[types_pb2.Request]
    results: list[TargetResult]
    deliveries: list[pb.HookDelivery]
    hooks: tuple[str, ...]

    @property
    def state(self) -> str:
        whole = [f for f in self.attempts if f.project == REPO]
        if whole:
            return fact_state(max(whole, key=lambda f: f.attempt))
        if self.requests:
            return request_state(self.requests[0])
        return NOT_RECORDED

    @property
    def title(self) -> str:
        return next((r.title for r in self.requests if r.title), "")


def delivery_ids(
    queue: str, facts: list[types_pb2.ValidationFact], hooks: tuple[str, ...]
) -> list[str]:
    """The ids every hook delivery of these verdicts would have: an event's id is a stable
    function of (Queue, commit, attempt, type, project), and a delivery is named
    ``<queue>/<event id>/<hook>``."""
    ids: list[str] = []
    for fact in facts:
        for kind in EVENT_TYPES:
            event = event_id(queue, fact.uri, fact.attempt, kind, fact.project)
            ids.extend(f"{queue}/{event}/{hook}" for hook in hooks)
    return ids[:MAX_DELIVERY_LOOKUPS]


async def commit(
    client: ConsoleClient,
    queue: str,
    uri: str,
    request_id: str = "",
    *,
    projects: tuple[str, ...] = (),
    hooks: tuple[str, ...] = (),
) -> CommitView:
    """Every attempt's fact in every scope, the Request behind them with its transitions,
    the failed targets' log excerpts per attempt, and the hook deliveries of the
    commit's verdict events (``request_id`` for a commit with no verdict yet: the grid
    links it)."""
    columns = [REPO, *projects]
    answers = await asyncio.gather(*(client.greenness(queue, uri, p) for p in columns))
    attempts = sorted(
        (f for answer in answers for f in answer.attempts),
        key=lambda f: (columns.index(f.project) if f.project in columns else 99, f.attempt),
    )
    ids = {f.request_id for f in attempts if f.request_id}
    if answers[0].HasField("request"):
        ids.add(answers[0].request.id)
    if request_id:
        ids.add(request_id)
    found = await asyncio.gather(*(client.request(i) for i in sorted(ids)))
    requests = [r for r in found if r is not None and r.queue == queue and r.uri == uri]
    logs, deliveries = await asyncio.gather(
        asyncio.gather(*(client.build_logs(r.id) for r in requests)),
        asyncio.gather(*(client.hook_delivery(d) for d in delivery_ids(queue, attempts, hooks))),
    )
    results = []
    for request, kept in zip(requests, logs, strict=True):
        for log in kept:
            text, cut = excerpt(log.content)
            results.append(
                TargetResult(
                    request.id,
                    log.attempt,
                    log.target,
                    log.build_id,
                    text,
                    cut or log.truncated,
                    stamp(log.created_at),
                )
            )
    results.sort(key=lambda t: (t.request_id, t.attempt, t.target))
    recorded = answers[0].status == pb.GREENNESS_STATUS_RECORDED
    shown = [d for d in deliveries if d is not None]
    shown.sort(key=lambda d: (stamp(d.created_at) or datetime.min.replace(tzinfo=UTC), d.id))
    return CommitView(queue, uri, recorded, columns, attempts, requests, results, shown, hooks)
