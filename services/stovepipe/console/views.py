"""What each page shows, computed from API answers: cell states, rows, Queue summaries.

Kept apart from the HTTP layer so the rules (which colour a commit gets, what
"commits since last green" counts) are plain functions over protobuf messages.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stovepipe.console.client import ConsoleClient, request_number
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


def request_state(request: types_pb2.Request) -> str:
    """The state of a commit that has no verdict yet (absence is never green)."""
    return {
        types_pb2.REQUEST_STATE_ACCEPTED: WAITING,
        types_pb2.REQUEST_STATE_PROCESSING: RUNNING,
        types_pb2.REQUEST_STATE_ANALYZING: RUNNING,
        types_pb2.REQUEST_STATE_SUPERSEDED: SUPERSEDED,
        types_pb2.REQUEST_STATE_CANCELLED: CANCELLED,
    }.get(request.state, NOT_RECORDED)


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
class Cell:
    state: str
    fact: types_pb2.ValidationFact | None = None

    @property
    def label(self) -> str:
        if self.fact is not None and self.state == BROKEN and 0 < self.fact.degree < 1:
            return f"broken ({self.fact.degree:g})"
        return STATE_LABELS[self.state]


@dataclass
class Row:
    """One commit of a Queue: its URI, the Request that validated it, one cell per column."""

    uri: str
    request_id: str
    number: int | None
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


REPO = ""
"""The whole-repository column's project name."""


def _rows_from_facts(facts: list[types_pb2.ValidationFact]) -> list[Row]:
    """One row per commit, newest first; a re-validated commit shows its newest attempt."""
    rows: dict[str, Row] = {}
    for fact in facts:
        row = rows.get(fact.uri)
        if row is None:
            row = rows[fact.uri] = Row(
                fact.uri, fact.request_id, request_number(fact.request_id), stamp(fact.created_at)
            )
        current = row.cells.get(fact.project)
        if current is None or (current.fact is not None and fact.attempt > current.fact.attempt):
            row.cells[fact.project] = Cell(fact_state(fact), fact)
    return list(rows.values())


def _row_from_request(request: types_pb2.Request) -> Row:
    return Row(
        request.uri,
        request.id,
        request_number(request.id),
        stamp(request.updated_at) or stamp(request.created_at),
        {REPO: Cell(request_state(request))},
    )


async def grid(
    client: ConsoleClient,
    queue: str,
    *,
    projects: list[str],
    promotion_ref: str | None,
    page_size: int,
    page_token: str = "",
) -> Grid:
    """One page of a Queue's history, newest first.

    The first page also holds the Requests newer than the newest verdict (running,
    waiting); on every page the ingest numbers missing between two verdicts are
    looked up, which is where superseded and cancelled commits are.
    """
    page, last_green = await asyncio.gather(
        client.facts(queue, page_size=page_size, page_token=page_token),
        client.last_green(queue),
    )
    rows = _rows_from_facts(page.facts)
    numbers = [r.number for r in rows if r.number is not None]
    newer: list[types_pb2.Request] = []
    if not page_token:
        newer = await client.newer_requests(queue, max(numbers, default=0))
    gaps: list[int] = []
    if numbers:
        have = set(numbers)
        low = min(numbers) if page.next_token else 1
        gaps = [n for n in range(low, max(numbers)) if n not in have]
    between = await client.requests(queue, gaps)
    extra = [_row_from_request(r) for r in newer if r.uri not in {row.uri for row in rows}]
    extra += [_row_from_request(r) for r in between.values()]
    merged = sorted(rows + extra, key=lambda r: r.number or 0, reverse=True)
    for project in projects:
        if project == REPO:
            continue
        for row in merged:
            row.cells.setdefault(project, Cell(NOT_RECORDED))
    for row in merged:
        row.cells.setdefault(REPO, Cell(NOT_RECORDED))
        if last_green.found and row.uri == last_green.uri:
            row.marks.append("last green")
            if promotion_ref:
                row.marks.append(f"promotes {promotion_ref}")
    return Grid(
        queue,
        [REPO, *[p for p in projects if p != REPO]],
        merged,
        page.next_token,
        last_green.uri if last_green.found else "",
        promotion_ref,
    )


@dataclass
class QueueSummary:
    name: str
    last_green_uri: str
    last_green_when: datetime | None
    since_last_green: int
    since_more: bool
    in_flight: int
    waiting: int
    state: str
    newest: str


async def summary(client: ConsoleClient, queue: str, *, window: int = 50) -> QueueSummary:
    """A Queue at a glance: where green is, how far behind the head it is, what runs.

    ``state`` is ``green`` when the newest commit is the last green one, ``broken``
    or ``fail-closed`` when the newest verdict is not green, ``pending`` when
    commits after the last green one are still being validated, and
    ``not-recorded`` before any verdict.
    """
    page_grid = await grid(
        client, queue, projects=[], promotion_ref=None, page_size=window, page_token=""
    )
    rows = page_grid.rows
    since = 0
    for row in rows:
        if row.uri == page_grid.last_green:
            break
        since += 1
    cells = [r.cells[REPO] for r in rows]
    recorded = [c for c in cells if c.fact is not None]
    if not recorded:
        state = NOT_RECORDED
    elif rows and rows[0].uri == page_grid.last_green:
        state = GREEN
    elif recorded[0].state != GREEN:
        state = recorded[0].state
    else:
        state = "pending"
    when = next((r.when for r in rows if r.uri == page_grid.last_green), None)
    if page_grid.last_green and when is None:
        answer = await client.last_green(queue)
        when = stamp(answer.fact.created_at)
    return QueueSummary(
        name=queue,
        last_green_uri=page_grid.last_green,
        last_green_when=when,
        since_last_green=since,
        since_more=bool(page_grid.last_green) and since == len(rows),
        in_flight=sum(1 for c in cells if c.state == RUNNING),
        waiting=sum(1 for c in cells if c.state == WAITING),
        state=state,
        newest=rows[0].uri if rows else "",
    )


async def commit(client: ConsoleClient, queue: str, uri: str, request_id: str = "") -> CommitView:
    """Every attempt's fact and the Request behind it (``request_id`` for a commit that
    has no verdict yet: the grid links it)."""
    greenness = await client.greenness(queue, uri)
    attempts = sorted(greenness.attempts, key=lambda f: (f.project, f.attempt))
    ids = {f.request_id for f in attempts if f.request_id}
    if request_id:
        ids.add(request_id)
    found = await asyncio.gather(*(client.request(i) for i in sorted(ids)))
    requests = [r for r in found if r is not None and r.queue == queue and r.uri == uri]
    recorded = greenness.status == pb.GREENNESS_STATUS_RECORDED
    return CommitView(queue, uri, recorded, attempts, requests)


@dataclass
class CommitView:
    queue: str
    uri: str
    recorded: bool
    attempts: list[types_pb2.ValidationFact]
    requests: list[types_pb2.Request]

    @property
    def state(self) -> str:
        whole = [f for f in self.attempts if f.project == REPO]
        if whole:
            return fact_state(max(whole, key=lambda f: f.attempt))
        if self.requests:
            return request_state(self.requests[0])
        return NOT_RECORDED
