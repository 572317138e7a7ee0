"""``Store``: every read and write Stovepipe makes, with the same behaviour on both backends.

Writes come in two shapes. A compare-and-swap updates one row
``WHERE <key> AND version = :old`` and checks the affected row count; the
caller computes the new row, ``version`` included, from the one it read. A
create-only insert uses ``ON CONFLICT DO NOTHING`` and, when the row was
already there, reads it back for the caller to adopt. The one write that
touches two rows is a new Request together with its dedup row, in one
transaction, so that a dedup row never points at a Request that is missing.

A stage step that makes several calls in a row (read the Queue, update it,
stamp the Request) runs them in one transaction with :meth:`Store.unit`: one
connection, one ``BEGIN``/``COMMIT``, each call unchanged inside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    RowMapping,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import ReturningInsert

from stovepipe.domain import (
    GREEN,
    TERMINAL_STATES,
    Build,
    FactOrigin,
    ProjectBookmark,
    QueueState,
    Request,
    RequestId,
    RequestState,
    ValidationFact,
    validate_queue_name,
)
from stovepipe.domain.errors import InvalidInput
from stovepipe.domain.trigger import TriggerDetails, UpstreamGreen
from stovepipe.storage import convert
from stovepipe.storage.build_logs import BuildLog
from stovepipe.storage.engine import SQLITE_BEGIN_OPTION
from stovepipe.storage.errors import (
    AlreadyExists,
    StorageError,
    StorageUnavailable,
    VersionMismatch,
    translate,
)
from stovepipe.storage.hook_deliveries import HookDelivery, HookDeliveryStatus
from stovepipe.storage.page_token import FactCursor, decode_page_token, encode_page_token
from stovepipe.storage.request_history import (
    RequestCursor,
    RequestTransition,
    decode_request_token,
    encode_request_token,
)
from stovepipe.storage.tables import (
    build_logs,
    builds,
    hook_deliveries,
    hook_subscriptions_disabled,
    project_bookmarks,
    queue_staleness,
    queues,
    request_counters,
    request_dedup,
    request_transitions,
    requests,
    validation_facts,
)
from stovepipe.telemetry.metrics import INGEST_TO_VERDICT_SECONDS, VERDICTS

_IMMUTABLE_COLUMNS = frozenset({"created_at"})


class Store:
    """Async storage over an ``AsyncEngine`` from :func:`stovepipe.storage.create_engine`.

    Every method runs in its own short transaction and raises only
    ``stovepipe.storage.errors`` classes or ``InvalidInput`` for arguments
    that can never be stored.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        if self._dialect not in ("postgresql", "sqlite"):
            raise InvalidInput(f"unsupported database dialect {self._dialect!r}")
        self._unit: ContextVar[AsyncConnection | None] = ContextVar(
            f"stovepipe-store-unit-{id(self)}", default=None
        )

    @asynccontextmanager
    async def unit(self, *, read_only: bool = False) -> AsyncIterator[None]:
        """Every call of this Store inside the block shares one transaction.

        Why: a stage step used to be a transaction per call (a read, then a
        compare-and-swap, then another), each a round trip and a pool checkout;
        in one unit they commit together or not at all. The calls keep their own
        semantics: a lost compare-and-swap still raises ``VersionMismatch`` and
        a create-only insert still reports the row it found, neither of which
        spoils the transaction. A unit inside a unit joins the outer one.

        Keep a unit to storage calls: no RPC and no publish inside it (a
        published message could be read before the commit it describes, and on
        SQLite the unit holds the write lock: it begins ``IMMEDIATE``, so two
        read-then-write units queue for the lock instead of failing on a stale
        snapshot). Nor spawn tasks in it: they would share the connection.
        ``read_only`` units (reads that belong together) take no write lock.
        """
        if self._unit.get() is not None:
            yield
            return
        try:
            async with self.engine.connect() as conn:
                if self._dialect == "sqlite" and not read_only:
                    conn = await conn.execution_options(**{SQLITE_BEGIN_OPTION: "BEGIN IMMEDIATE"})
                async with conn.begin():
                    token = self._unit.set(conn)
                    try:
                        yield
                    finally:
                        self._unit.reset(token)
        except Exception as exc:
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def close(self) -> None:
        """Close the engine's pooled connections."""
        await self.engine.dispose()

    # Queues

    async def ensure_queue(self, name: str, *, now: datetime | None = None) -> QueueState:
        """The Queue's row, created at version 1 on first use; safe to race."""
        validate_queue_name(name)
        found = await self.get_queue(name)
        if found is not None:
            return found
        fresh = QueueState(name=name, version=1, updated_at=now or datetime.now(UTC))
        await self._insert_if_absent(queues, convert.queue_values(fresh))
        found = await self.get_queue(name)
        if found is None:
            raise StorageError(f"queue {name} vanished right after it was created")
        return found

    async def get_queue(self, name: str) -> QueueState | None:
        row = await self._one(select(queues).where(queues.c.queue == name))
        return convert.queue_from_row(row) if row else None

    async def get_last_green(self, name: str) -> tuple[QueueState, ValidationFact | None] | None:
        """The Queue and the authoritative whole-Queue fact of its last green commit.

        The gate path: one statement (the Queue row joined to its fact) on a
        connection without BEGIN/COMMIT, built once per process. A single
        statement reads one snapshot, so the bookmark and its fact agree.
        """
        row = await self._read_once_more(_LAST_GREEN, {"queue": name})
        if row is None:
            return None
        queue = convert.queue_from_row(row)
        if row[_FACT_PREFIX + "uri"] is None:
            return queue, None
        fact = {c.name: row[_FACT_PREFIX + c.name] for c in validation_facts.c}
        return queue, convert.fact_from_row(fact)  # type: ignore[arg-type]

    async def list_queues(self) -> list[QueueState]:
        rows = await self._all(select(queues).order_by(queues.c.queue))
        return [convert.queue_from_row(r) for r in rows]

    async def update_queue(self, old: QueueState, new: QueueState) -> QueueState:
        """CAS from ``old`` to ``new`` (``new.version == old.version + 1``)."""
        await self._compare_and_swap(
            queues, {"queue": old.name}, old.version, convert.queue_values(new)
        )
        return new

    # Requests

    async def next_request_number(self, queue: str) -> int:
        """The Queue's next counter value: unique under any concurrency, starting at 1.

        One atomic upsert, so the first call for a Queue needs no separate
        create step and two callers can never read the same value.
        """
        validate_queue_name(queue)
        statement = (
            self._insert(request_counters)
            .values(queue=queue, value=1)
            .on_conflict_do_update(
                index_elements=[request_counters.c.queue],
                set_={"value": request_counters.c.value + 1},
            )
            .returning(request_counters.c.value)
        )
        async with self._transaction() as conn:
            value = (await conn.execute(statement)).scalar_one()
        return int(value)

    async def create_request(
        self,
        queue: str,
        uri: str,
        *,
        trigger: str,
        now: datetime,
        trigger_details: TriggerDetails = (),
        upstream_greens: tuple[UpstreamGreen, ...] = (),
        title: str = "",
        head_revision: str = "",
    ) -> tuple[Request, bool]:
        """The Request for ``(queue, uri)`` and True, or the one already there and False.

        Concurrent callers with the same head all get the same Request and
        exactly one of them gets True. A caller that loses the race has spent
        a counter value, so ``n`` may have gaps; it never repeats.
        """
        validate_queue_name(queue)
        if not uri:
            raise InvalidInput("a request needs a commit URI")
        found = await self.find_request(queue, uri)
        if found is not None:
            return found, False
        n = await self.next_request_number(queue)
        request = Request(
            id=str(RequestId(queue, n)),
            queue=queue,
            uri=uri,
            state=RequestState.ACCEPTED,
            version=1,
            created_at=now,
            updated_at=now,
            trigger=trigger,
            trigger_details=trigger_details,
            upstream_greens=upstream_greens,
            title=title,
            head_revision=head_revision,
        )
        row = convert.check_lengths(requests, convert.request_values(request))
        dedup = convert.check_lengths(
            request_dedup, {"queue": queue, "uri": uri, "request_id": request.id}
        )
        async with self._transaction() as conn:
            claimed = await conn.execute(self._insert_or_skip(request_dedup, dedup))
            created = claimed.first() is not None
            if created:
                await conn.execute(self._insert(requests).values(row))
                await conn.execute(self._insert(request_transitions).values(_transition(request)))
        if created:
            return request, True
        found = await self.find_request(queue, uri)
        if found is None:
            raise StorageError(f"{queue}: {uri} has a dedup row but no request")
        return found, False

    async def get_request(self, request_id: str) -> Request | None:
        """The Request, or None; ``InvalidInput`` when ``request_id`` is malformed."""
        rid = RequestId.parse(request_id)
        row = await self._one(select(requests).where(*_request_key(rid)))
        return convert.request_from_row(row) if row else None

    async def find_request(self, queue: str, uri: str) -> Request | None:
        """The Request that ``(queue, uri)`` was deduplicated to, if any."""
        dedup = request_dedup.c
        async with self._transaction() as conn:
            request_id = (
                await conn.execute(
                    select(dedup.request_id).where(dedup.queue == queue, dedup.uri == uri)
                )
            ).scalar_one_or_none()
            if request_id is None:
                return None
            rid = RequestId.parse(request_id)
            row = (
                (await conn.execute(select(requests).where(*_request_key(rid)))).mappings().first()
            )
        return convert.request_from_row(row) if row else None

    async def update_request(self, old: Request, new: Request) -> Request:
        """CAS from ``old`` to ``new`` (``new.version == old.version + 1``)."""
        rid = old.request_id
        changed = new.state is not old.state or new.attempt != old.attempt
        await self._compare_and_swap(
            requests,
            {"queue": rid.queue, "n": rid.n},
            old.version,
            convert.request_values(new),
            also=self._insert(request_transitions).values(_transition(new)) if changed else None,
        )
        return new

    async def list_transitions(self, request_id: str) -> list[RequestTransition]:
        """The Request's state changes, oldest first (empty for an unknown Request)."""
        rid = RequestId.parse(request_id)
        c = request_transitions.c
        rows = await self._all(
            select(request_transitions)
            .where(c.queue == rid.queue, c.n == rid.n)
            .order_by(c.version)
        )
        return [
            RequestTransition(
                state=RequestState(r["state"]),
                attempt=r["attempt"],
                reason=r["reason"],
                at=r["at"],
                version=r["version"],
            )
            for r in rows
        ]

    async def page_requests(
        self, queue: str, *, page_size: int, page_token: str = ""
    ) -> tuple[list[Request], str]:
        """One page of a Queue's Requests, newest first, and the next page's token
        (empty on the last page)."""
        _check_limit(page_size)
        cursor = decode_request_token(page_token)
        c = requests.c
        statement = select(requests).where(c.queue == queue)
        if cursor is not None:
            statement = statement.where(c.n < cursor.before)
        rows = await self._all(statement.order_by(c.n.desc()).limit(page_size + 1))
        page = [convert.request_from_row(r) for r in rows[:page_size]]
        if len(rows) <= page_size:
            return page, ""
        return page, encode_request_token(RequestCursor(page[-1].request_id.n))

    async def count_requests_by_state(self, queue: str) -> dict[RequestState, int]:
        """How many of the Queue's Requests are in each non-terminal state."""
        c = requests.c
        statement = (
            select(c.state, func.count())
            .where(c.queue == queue, c.state.not_in([s.value for s in TERMINAL_STATES]))
            .group_by(c.state)
        )
        async with self._transaction() as conn:
            rows = (await conn.execute(statement)).all()
        return {RequestState(state): int(count) for state, count in rows}

    async def find_commit_uris(self, queue: str, sha_prefix: str, *, limit: int) -> list[str]:
        """URIs of the Queue's ingested commits whose commit part (after the last ``@``)
        starts with ``sha_prefix``; at most ``limit``.

        ``sha_prefix`` must be lowercase hex, so it carries no LIKE wildcard.
        """
        _check_limit(limit)
        if not sha_prefix or any(ch not in "0123456789abcdef" for ch in sha_prefix):
            raise InvalidInput("a commit SHA prefix is lowercase hexadecimal digits")
        d = request_dedup.c
        statement = (
            select(d.uri)
            .where(d.queue == queue, d.uri.like(f"%@{sha_prefix}%"))
            .order_by(d.uri)
            .limit(limit * 4)
        )
        async with self._transaction() as conn:
            found = (await conn.execute(statement)).scalars().all()
        matching = [u for u in found if u.rpartition("@")[2].startswith(sha_prefix)]
        return matching[:limit]

    async def list_requests(
        self,
        queue: str,
        *,
        states: Iterable[RequestState] | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[Request]:
        """A Queue's Requests in ingest order (newest first by default), optionally by state."""
        _check_limit(limit)
        statement = select(requests).where(requests.c.queue == queue)
        if states is not None:
            statement = statement.where(requests.c.state.in_([s.value for s in states]))
        order = requests.c.n.desc() if newest_first else requests.c.n.asc()
        rows = await self._all(statement.order_by(order).limit(limit))
        return [convert.request_from_row(r) for r in rows]

    async def list_unfinished_requests(
        self, updated_before: datetime, limit: int = 100
    ) -> list[Request]:
        """Non-terminal Requests of every Queue unchanged since ``updated_before``, oldest first."""
        _check_limit(limit)
        c = requests.c
        statement = (
            select(requests)
            .where(c.state.not_in([s.value for s in TERMINAL_STATES]))
            .where(c.updated_at < updated_before)
            .order_by(c.updated_at, c.queue, c.n)
            .limit(limit)
        )
        return [convert.request_from_row(r) for r in await self._all(statement)]

    async def list_unrecorded_requests(
        self, updated_after: datetime, updated_before: datetime, limit: int = 100
    ) -> list[Request]:
        """Settled Requests (succeeded / failed) whose current attempt has no whole-repository
        fact yet, oldest first.

        A verdict whose record message was lost (a broker that forgot its data)
        would otherwise never be written; the sweeper asks for these. The window
        keeps each pass from scanning the whole history.
        """
        _check_limit(limit)
        c = requests.c
        f = validation_facts.c
        has_fact = (
            select(f.uri)
            .where(f.queue == c.queue, f.uri == c.uri, f.project == "", f.attempt == c.attempt)
            .exists()
        )
        statement = (
            select(requests)
            .where(c.state.in_([RequestState.SUCCEEDED.value, RequestState.FAILED.value]))
            .where(c.updated_at >= updated_after, c.updated_at < updated_before)
            .where(~has_fact)
            .order_by(c.updated_at, c.queue, c.n)
            .limit(limit)
        )
        return [convert.request_from_row(r) for r in await self._all(statement)]

    # Builds

    async def create_build(self, build: Build) -> Build:
        """Create-only; ``AlreadyExists.existing`` is the stored Build when the id is taken."""
        values = convert.build_values(build)
        if not await self._insert_if_absent(builds, values):
            existing = await self.get_build(build.queue, build.build_id)
            raise AlreadyExists(f"build {build.build_id} of {build.queue} exists", existing)
        return build

    async def get_build(self, queue: str, build_id: str) -> Build | None:
        row = await self._one(
            select(builds).where(builds.c.queue == queue, builds.c.build_id == build_id)
        )
        return convert.build_from_row(row) if row else None

    async def update_build(self, old: Build, new: Build) -> Build:
        """CAS from ``old`` to ``new`` (``new.version == old.version + 1``)."""
        await self._compare_and_swap(
            builds,
            {"queue": old.queue, "build_id": old.build_id},
            old.version,
            convert.build_values(new),
        )
        return new

    # Validation facts

    async def create_fact(self, fact: ValidationFact) -> ValidationFact:
        """Create-only per attempt: a stored fact is never overwritten.

        ``AlreadyExists.existing`` is the fact already stored for the same
        ``(queue, uri, project, attempt)``.
        """
        if not await self._insert_if_absent(validation_facts, convert.fact_values(fact)):
            existing = await self.get_fact_of_attempt(
                fact.queue, fact.uri, fact.project, fact.attempt
            )
            raise AlreadyExists(
                f"{fact.queue}: {fact.uri} already has a fact for project {fact.project!r} "
                f"(attempt {fact.attempt})",
                existing,
            )
        await self._count_verdict(fact)
        return fact

    async def _count_verdict(self, fact: ValidationFact) -> None:
        """Metrics of a verdict, counted here because this insert happens once per fact
        whichever stage (record, the dead-letter reconciler) produced it."""
        result = "green" if fact.green else "red"
        VERDICTS.labels(fact.queue, fact.project, result, fact.origin.value).inc()
        request = await self.get_request(fact.request_id)
        if request is not None:
            waited = (fact.created_at - request.created_at).total_seconds()
            INGEST_TO_VERDICT_SECONDS.labels(fact.queue, fact.project).observe(max(0.0, waited))

    async def get_fact(self, queue: str, uri: str, project: str) -> ValidationFact | None:
        """The authoritative fact of a commit and scope (see ``domain.fact.outranks``)."""
        c = validation_facts.c
        row = await self._one(
            select(validation_facts).where(
                c.queue == queue, c.uri == uri, c.project == project, _authoritative()
            )
        )
        return convert.fact_from_row(row) if row else None

    async def get_facts(
        self, queue: str, uris: Sequence[str], project: str
    ) -> dict[str, ValidationFact]:
        """The authoritative fact of each of ``uris`` that has one in ``project``, by URI:
        one query for a page of history instead of one per commit."""
        if not uris:
            return {}
        c = validation_facts.c
        rows = await self._all(
            select(validation_facts).where(
                c.queue == queue, c.uri.in_(list(uris)), c.project == project, _authoritative()
            )
        )
        return {row["uri"]: convert.fact_from_row(row) for row in rows}

    async def get_fact_of_attempt(
        self, queue: str, uri: str, project: str, attempt: int
    ) -> ValidationFact | None:
        c = validation_facts.c
        row = await self._one(
            select(validation_facts).where(
                c.queue == queue, c.uri == uri, c.project == project, c.attempt == attempt
            )
        )
        return convert.fact_from_row(row) if row else None

    async def get_fact_of_attempt_and_trigger(
        self, queue: str, uri: str, project: str, attempt: int
    ) -> tuple[ValidationFact, tuple[str, TriggerDetails] | None] | None:
        """The fact of one attempt and why its Request exists (trigger and details;
        ``None`` if the Request is gone), in one statement: the event feed confirms
        every verdict event it serves this way."""
        c = validation_facts.c
        r = requests.c
        row = await self._one(
            select(validation_facts, r.trigger, r.trigger_details)
            .select_from(
                validation_facts.outerjoin(requests, and_(r.queue == c.queue, r.id == c.request_id))
            )
            .where(c.queue == queue, c.uri == uri, c.project == project, c.attempt == attempt)
        )
        if row is None:
            return None
        fact = convert.fact_from_row(row)
        if row["trigger"] is None:
            return fact, None
        details: TriggerDetails = tuple(sorted((row["trigger_details"] or {}).items()))
        return fact, (row["trigger"], details)

    async def list_fact_attempts(self, queue: str, uri: str, project: str) -> list[ValidationFact]:
        """Every attempt's fact for a commit and scope, oldest attempt first."""
        c = validation_facts.c
        statement = (
            select(validation_facts)
            .where(c.queue == queue, c.uri == uri, c.project == project)
            .order_by(c.attempt)
        )
        return [convert.fact_from_row(r) for r in await self._all(statement)]

    async def list_facts(
        self, queue: str, project: str, *, page_size: int, page_token: str = ""
    ) -> tuple[list[ValidationFact], str]:
        """One page of a Queue's authoritative facts for ``project``, newest first, and the next
        page's token.

        The token is empty on the last page. Facts created between two calls
        never make a fact repeat or go missing across pages.
        """
        _check_limit(page_size)
        cursor = decode_page_token(page_token)
        c = validation_facts.c
        statement = select(validation_facts).where(
            c.queue == queue, c.project == project, _authoritative()
        )
        if cursor is not None:
            statement = statement.where(
                or_(
                    c.created_at < cursor.created_at,
                    and_(c.created_at == cursor.created_at, c.uri > cursor.uri),
                )
            )
        statement = statement.order_by(c.created_at.desc(), c.uri).limit(page_size + 1)
        rows = await self._all(statement)
        facts = [convert.fact_from_row(r) for r in rows[:page_size]]
        if len(rows) <= page_size:
            return facts, ""
        last = facts[-1]
        return facts, encode_page_token(FactCursor(last.created_at, last.uri))

    # Hook deliveries

    async def list_project_facts(self, queue: str, uri: str) -> list[ValidationFact]:
        """The authoritative fact of every project (not the whole repository) of a commit."""
        c = validation_facts.c
        statement = (
            select(validation_facts)
            .where(c.queue == queue, c.uri == uri, c.project != "", _authoritative())
            .order_by(c.project)
        )
        return [convert.fact_from_row(r) for r in await self._all(statement)]

    async def latest_project_build(self, queue: str, request_id: str, project: str) -> Build | None:
        """The newest build of ``project`` started for ``request_id`` (project-scoped)."""
        b = builds.c
        row = await self._one(
            select(builds)
            .where(b.queue == queue, b.request_id == request_id, b.project == project)
            .order_by(b.created_at.desc(), b.build_id.desc())
            .limit(1)
        )
        return convert.build_from_row(row) if row else None

    # Per-project bookmarks

    async def ensure_project_bookmark(
        self, queue: str, project: str, *, now: datetime | None = None
    ) -> ProjectBookmark:
        """The project's bookmark row, created empty at version 1 on first use; safe to race."""
        await self._insert_if_absent(
            project_bookmarks,
            convert.project_bookmark_values(
                ProjectBookmark(
                    queue=queue, project=project, version=1, updated_at=now or datetime.now(UTC)
                )
            ),
        )
        found = await self.get_project_bookmark(queue, project)
        if found is None:
            raise StorageError(f"project bookmark {queue}/{project} vanished after insert")
        return found

    async def get_project_bookmark(self, queue: str, project: str) -> ProjectBookmark | None:
        c = project_bookmarks.c
        row = await self._one(
            select(project_bookmarks).where(c.queue == queue, c.project == project)
        )
        return convert.project_bookmark_from_row(row) if row else None

    async def list_project_bookmarks(self, queue: str) -> list[ProjectBookmark]:
        c = project_bookmarks.c
        statement = select(project_bookmarks).where(c.queue == queue).order_by(c.project)
        return [convert.project_bookmark_from_row(r) for r in await self._all(statement)]

    async def update_project_bookmark(
        self, old: ProjectBookmark, new: ProjectBookmark
    ) -> ProjectBookmark:
        await self._compare_and_swap(
            project_bookmarks,
            {"queue": old.queue, "project": old.project},
            old.version,
            convert.project_bookmark_values(new),
        )
        return new

    async def create_hook_delivery(self, delivery: HookDelivery) -> HookDelivery:
        """Create-only; ``AlreadyExists.existing`` is the stored row."""
        values = convert.hook_delivery_values(delivery)
        if not await self._insert_if_absent(hook_deliveries, values):
            existing = await self.get_hook_delivery(
                delivery.queue, delivery.event_id, delivery.hook
            )
            raise AlreadyExists(
                f"{delivery.queue}: event {delivery.event_id} already has a delivery to "
                f"{delivery.hook}",
                existing,
            )
        return delivery

    async def get_hook_delivery(self, queue: str, event_id: str, hook: str) -> HookDelivery | None:
        c = hook_deliveries.c
        row = await self._one(
            select(hook_deliveries).where(c.queue == queue, c.event_id == event_id, c.hook == hook)
        )
        return convert.hook_delivery_from_row(row) if row else None

    async def update_hook_delivery(self, old: HookDelivery, new: HookDelivery) -> HookDelivery:
        """CAS from ``old`` to ``new`` (``new.version == old.version + 1``)."""
        await self._compare_and_swap(
            hook_deliveries,
            {"queue": old.queue, "event_id": old.event_id, "hook": old.hook},
            old.version,
            convert.hook_delivery_values(new),
        )
        return new

    async def next_hook_delivery(self, queue: str, hook: str) -> HookDelivery | None:
        """The subscription's pending delivery that comes first in event order."""
        c = hook_deliveries.c
        row = await self._one(
            select(hook_deliveries)
            .where(c.status == HookDeliveryStatus.PENDING.value, c.queue == queue, c.hook == hook)
            .order_by(c.position, c.created_at, c.event_id)
            .limit(1)
        )
        return convert.hook_delivery_from_row(row) if row else None

    async def pending_hook_subscriptions(self) -> list[tuple[str, str]]:
        """Every ``(queue, hook)`` with at least one pending delivery."""
        c = hook_deliveries.c
        rows = await self._all(
            select(c.queue, c.hook)
            .where(c.status == HookDeliveryStatus.PENDING.value)
            .group_by(c.queue, c.hook)
        )
        return [(r["queue"], r["hook"]) for r in rows]

    async def list_hook_deliveries(
        self,
        *,
        queue: str = "",
        status: HookDeliveryStatus | None = None,
        page_size: int,
        page_token: str = "",
    ) -> tuple[list[HookDelivery], str]:
        """One page of deliveries, newest first, and the next page's token (empty: last page).

        The token is an offset: deliveries created between two calls shift the pages."""
        _check_limit(page_size)
        try:
            offset = int(page_token or "0")
        except ValueError:
            raise InvalidInput("page_token is not one this server returned") from None
        if offset < 0:
            raise InvalidInput("page_token is not one this server returned")
        c = hook_deliveries.c
        statement = select(hook_deliveries)
        if queue:
            statement = statement.where(c.queue == queue)
        if status is not None:
            statement = statement.where(c.status == status.value)
        statement = (
            statement.order_by(c.created_at.desc(), c.position.desc(), c.event_id, c.hook)
            .offset(offset)
            .limit(page_size + 1)
        )
        rows = await self._all(statement)
        found = [convert.hook_delivery_from_row(r) for r in rows[:page_size]]
        return found, str(offset + page_size) if len(rows) > page_size else ""

    async def disable_hook_subscription(
        self, queue: str, hook: str, reason: str, now: datetime
    ) -> None:
        """Remember that the subscription's target is gone (idempotent: the first reason stays)."""
        await self._insert_if_absent(
            hook_subscriptions_disabled,
            {"queue": queue, "hook": hook, "reason": reason[:2000], "disabled_at": now},
        )

    async def hook_subscription_disabled(self, queue: str, hook: str) -> str | None:
        """Why the subscription is disabled, or ``None`` when it is not."""
        c = hook_subscriptions_disabled.c
        row = await self._one(
            select(hook_subscriptions_disabled).where(c.queue == queue, c.hook == hook)
        )
        return str(row["reason"]) if row else None

    async def enable_hook_subscription(self, queue: str, hook: str) -> None:
        c = hook_subscriptions_disabled.c
        async with self._transaction() as conn:
            await conn.execute(
                delete(hook_subscriptions_disabled).where(c.queue == queue, c.hook == hook)
            )

    async def previous_fact(
        self, queue: str, project: str, before_request: int
    ) -> ValidationFact | None:
        """The authoritative fact of the Queue's newest Request ingested before request number
        ``before_request`` that has one: the verdict a new one is a transition from."""
        f = validation_facts.c
        r = requests.c
        row = await self._one(
            select(validation_facts)
            .join(requests, and_(r.queue == f.queue, r.id == f.request_id))
            .where(f.queue == queue, f.project == project, r.n < before_request, _authoritative())
            .order_by(r.n.desc())
            .limit(1)
        )
        return convert.fact_from_row(row) if row else None

    # Build logs of failed targets

    async def put_build_log(self, entry: BuildLog) -> bool:
        """Keep ``entry`` unless a log of the same target and attempt is kept (True if new)."""
        values = {
            "queue": entry.queue,
            "request_id": entry.request_id,
            "attempt": entry.attempt,
            "target": entry.target,
            "build_id": entry.build_id,
            "content": entry.content,
            "truncated": entry.truncated,
            "created_at": entry.created_at,
        }
        return await self._insert_if_absent(build_logs, values)

    async def list_build_logs(self, request_id: str, target: str = "") -> list[BuildLog]:
        """The kept logs of a Request, newest attempt first, then by target name."""
        c = build_logs.c
        rid = RequestId.parse(request_id)
        statement = select(build_logs).where(c.queue == rid.queue, c.request_id == request_id)
        if target:
            statement = statement.where(c.target == target)
        rows = await self._all(statement.order_by(c.attempt.desc(), c.target))
        return [
            BuildLog(
                queue=row["queue"],
                request_id=row["request_id"],
                attempt=row["attempt"],
                target=row["target"],
                build_id=row["build_id"],
                content=row["content"],
                truncated=bool(row["truncated"]),
                created_at=row["created_at"],
            )
            for row in rows
        ]

    async def prune_build_logs(self, older_than: datetime) -> int:
        """Forget logs kept before ``older_than``; returns how many went."""
        async with self._transaction() as conn:
            result = await conn.execute(
                delete(build_logs).where(build_logs.c.created_at < older_than)
            )
        return int(result.rowcount or 0)

    # Freshness of the Queues (the staleness objective)

    async def count_requests_after(self, queue: str, after: datetime | None) -> int:
        """Requests (reported heads) of ``queue`` created after ``after`` (all if ``None``)."""
        c = requests.c
        statement = select(func.count()).select_from(requests).where(c.queue == queue)
        if after is not None:
            statement = statement.where(c.created_at > after)
        async with self._transaction() as conn:
            return int((await conn.execute(statement)).scalar_one())

    async def first_request_at(self, queue: str) -> datetime | None:
        """When ``queue``'s first Request was reported, if any."""
        c = requests.c
        statement = select(func.min(c.created_at)).where(c.queue == queue)
        async with self._transaction() as conn:
            value = (await conn.execute(statement)).scalar_one()
        return value if isinstance(value, datetime) else None

    async def standings(
        self, names: Sequence[str]
    ) -> dict[str, tuple[QueueState | None, datetime | None, int, datetime | None]]:
        """Per Queue of ``names``: its row, when its last green Request was reported,
        how many Requests came after that (all of them without a green one), and when
        its first Request came. Two statements for every Queue at once: the freshness
        monitor asks this of every configured Queue on a timer, and four reads per
        Queue made it the API's largest background cost with a thousand Queues."""
        if not names:
            return {}
        q = queues.c
        green = requests.alias("green")
        joined = queues.outerjoin(
            green, and_(green.c.queue == q.queue, green.c.id == q.last_green_request_id)
        )
        rows = await self._all(
            select(queues, green.c.created_at.label("green_at"))
            .select_from(joined)
            .where(q.queue.in_(names))
        )
        later = requests.alias("later")
        after_green = or_(green.c.created_at.is_(None), later.c.created_at > green.c.created_at)
        tallies = await self._all(
            select(
                later.c.queue,
                func.sum(case((after_green, 1), else_=0)).label("since"),
                func.min(later.c.created_at).label("first_at"),
            )
            .select_from(
                later.outerjoin(queues, q.queue == later.c.queue).outerjoin(
                    green, and_(green.c.queue == q.queue, green.c.id == q.last_green_request_id)
                )
            )
            .where(later.c.queue.in_(names))
            .group_by(later.c.queue)
        )
        by_queue = {row["queue"]: row for row in rows}
        counted = {row["queue"]: row for row in tallies}
        out: dict[str, tuple[QueueState | None, datetime | None, int, datetime | None]] = {}
        for name in names:
            row = by_queue.get(name)
            tally = counted.get(name)
            green_at = row["green_at"] if row is not None else None
            first_at = tally["first_at"] if tally is not None else None
            out[name] = (
                convert.queue_from_row(row) if row is not None else None,
                green_at if isinstance(green_at, datetime) else None,
                int(tally["since"] or 0) if tally is not None else 0,
                first_at if isinstance(first_at, datetime) else None,
            )
        return out

    async def turn_staleness(self, queue: str, stale: bool, now: datetime) -> bool:
        """Record that ``queue`` is (or is no longer) stale; True only for the caller that
        made the change, so an episode is announced once however many judge it.

        A Queue never recorded counts as fresh: turning it fresh changes nothing.
        """
        c = queue_staleness.c
        async with self._transaction() as conn:
            changed = await conn.execute(
                update(queue_staleness)
                .where(c.queue == queue, c.stale != stale)
                .values(stale=stale, changed_at=now)
            )
        if changed.rowcount:
            return True
        if not stale:
            return False
        return await self._insert_if_absent(
            queue_staleness, {"queue": queue, "stale": True, "changed_at": now}
        )

    async def count_hook_deliveries(self) -> dict[tuple[str, str], int]:
        """``(queue, status) -> count`` over every hook delivery ever recorded."""
        c = hook_deliveries.c
        statement = select(c.queue, c.status, func.count()).group_by(c.queue, c.status)
        async with self._transaction() as conn:
            rows = (await conn.execute(statement)).all()
        return {(str(queue), str(status)): int(count) for queue, status, count in rows}

    async def list_staleness(self) -> dict[str, tuple[bool, datetime]]:
        """Every Queue ever judged stale: whether it is stale now, and since when."""
        rows = await self._all(select(queue_staleness))
        return {row["queue"]: (bool(row["stale"]), row["changed_at"]) for row in rows}

    # Plumbing

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        if (bound := self._unit.get()) is not None:
            yield bound
            return
        try:
            async with self.engine.begin() as conn:
                yield conn
        except Exception as exc:
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one read-only statement: autocommit, so no BEGIN/COMMIT trips
        (inside a unit: the unit's connection)."""
        if (bound := self._unit.get()) is not None:
            yield bound
            return
        try:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn
        except Exception as exc:
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    async def _read_once_more(
        self, statement: Executable, params: dict[str, Any] | None = None
    ) -> RowMapping | None:
        """First row of a read-only ``statement``, tried again once on a connection found dead.

        A read changes nothing, so running it again is safe; the pool has
        dropped the dead connection (and every one older than it) by then.
        """
        for attempt in (1, 2):
            try:
                async with self._reading() as conn:
                    row: RowMapping | None = (
                        (await conn.execute(statement, params)).mappings().first()
                    )
                return row
            except StorageUnavailable as exc:
                if attempt == 2 or not _connection_lost(exc):
                    raise
        raise AssertionError("unreachable")

    async def _one(self, statement: Select[Any]) -> RowMapping | None:
        return await self._read_once_more(statement)

    async def _all(self, statement: Select[Any]) -> Sequence[RowMapping]:
        for attempt in (1, 2):
            try:
                async with self._reading() as conn:
                    rows: Sequence[RowMapping] = (await conn.execute(statement)).mappings().all()
                return rows
            except StorageUnavailable as exc:
                if attempt == 2 or not _connection_lost(exc):
                    raise
        raise AssertionError("unreachable")

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _insert_or_skip(self, table: Table, values: dict[str, Any]) -> ReturningInsert[Any]:
        key = list(table.primary_key.columns)
        return (
            self._insert(table)
            .values(values)
            .on_conflict_do_nothing(index_elements=key)
            .returning(*key)
        )

    async def _insert_if_absent(self, table: Table, values: dict[str, Any]) -> bool:
        """Insert one row unless its primary key exists; True when this call inserted it."""
        statement = self._insert_or_skip(table, convert.check_lengths(table, values))
        async with self._transaction() as conn:
            return (await conn.execute(statement)).first() is not None

    async def _compare_and_swap(
        self,
        table: Table,
        key: dict[str, Any],
        old_version: int,
        values: dict[str, Any],
        *,
        also: Executable | None = None,
    ) -> None:
        """Update one row if its version is ``old_version``; ``also`` runs in the same
        transaction when (and only when) the update applied."""
        if values["version"] != old_version + 1:
            raise StorageError(
                f"{table.name}: a CAS from version {old_version} must write version "
                f"{old_version + 1}, not {values['version']}"
            )
        if any(values[name] != value for name, value in key.items()):
            raise StorageError(f"{table.name}: a CAS cannot change the key {key}")
        convert.check_lengths(table, values)
        where = [table.c[name] == value for name, value in key.items()]
        changes = {
            name: value
            for name, value in values.items()
            if name not in key and name not in _IMMUTABLE_COLUMNS
        }
        statement = update(table).where(*where, table.c.version == old_version).values(changes)
        async with self._transaction() as conn:
            result = await conn.execute(statement)
            if result.rowcount == 1:
                if also is not None:
                    await conn.execute(also)
                return
            stored = (await conn.execute(select(table.c.version).where(*where))).scalar()
        if stored is None:
            raise StorageError(f"{table.name} {key}: no such row to update")
        raise VersionMismatch(
            f"{table.name} {key}: expected version {old_version}, the stored one is {stored}"
        )


def _transition(request: Request) -> dict[str, Any]:
    return {
        "queue": request.queue,
        "n": request.request_id.n,
        "version": request.version,
        "state": request.state.value,
        "attempt": request.attempt,
        "reason": request.reason,
        "at": request.updated_at,
    }


def _request_key(rid: RequestId) -> list[ColumnElement[bool]]:
    return [requests.c.queue == rid.queue, requests.c.n == rid.n]


def _authoritative() -> ColumnElement[bool]:
    """``validation_facts`` rows no other attempt of the same key outranks.

    The SQL twin of ``stovepipe.domain.fact.outranks``: green beats not green,
    the earliest green wins, a build verdict beats ``fail_closed``, and
    otherwise the later attempt wins.
    """
    a = validation_facts.c
    b = validation_facts.alias("rival").c
    build = FactOrigin.BUILD.value
    outranked = (
        select(b.attempt)
        .where(
            b.queue == a.queue,
            b.uri == a.uri,
            b.project == a.project,
            b.attempt != a.attempt,
            or_(
                and_(b.degree == GREEN, a.degree != GREEN),
                and_(b.degree == GREEN, a.degree == GREEN, b.attempt < a.attempt),
                and_(b.degree != GREEN, a.degree != GREEN, b.origin == build, a.origin != build),
                and_(
                    b.degree != GREEN,
                    a.degree != GREEN,
                    b.origin == a.origin,
                    b.attempt > a.attempt,
                ),
            ),
        )
        .exists()
    )
    return ~outranked


_FACT_PREFIX = "fact_"


def _last_green_statement() -> Select[Any]:
    q, f = queues.c, validation_facts.c
    joined = queues.outerjoin(
        validation_facts,
        and_(f.queue == q.queue, f.uri == q.last_green_uri, f.project == "", _authoritative()),
    )
    columns = [c.label(_FACT_PREFIX + c.name) for c in validation_facts.c]
    return (
        select(queues, *columns).select_from(joined).where(q.queue == bindparam("queue")).limit(1)
    )


_LAST_GREEN = _last_green_statement()


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise InvalidInput(f"a page or limit must be at least 1, got {limit}")


def _connection_lost(exc: BaseException) -> bool:
    """True when ``exc`` came from a connection the driver found dead (not a timeout or a lock)."""
    cause = exc.__cause__
    return isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated
