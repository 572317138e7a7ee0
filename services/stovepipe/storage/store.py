"""``Store``: every read and write Stovepipe makes, on either backend.

Writes are single-row compare-and-swap (``WHERE version = :old`` plus a
row-count check) or create-only inserts. The only multi-row transaction is the
Request insert with its dedup row, which exists to make "one Request per
(queue, uri)" hold under concurrency.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stovepipe.domain import (
    TERMINAL_STATES,
    Build,
    QueueState,
    Request,
    RequestId,
    RequestState,
    ValidationFact,
    validate_queue_name,
)
from stovepipe.storage import convert
from stovepipe.storage.errors import AlreadyExists, StorageError, VersionMismatch, translate
from stovepipe.storage.tables import (
    builds,
    queues,
    request_counters,
    request_dedup,
    requests,
    validation_facts,
)


class Store:
    """Async storage over an ``AsyncEngine`` (PostgreSQL or SQLite)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.begin() as conn:
                yield conn
        except StorageError:
            raise
        except Exception as exc:
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    # Queues -------------------------------------------------------------

    async def get_queue(self, name: str) -> QueueState | None:
        async with self._tx() as conn:
            row = (
                (await conn.execute(select(queues).where(queues.c.queue == name)))
                .mappings()
                .first()
            )
        return convert.queue_from_row(row) if row else None

    async def ensure_queue(self, name: str) -> QueueState:
        """The Queue's row, created empty on first use (idempotent under races)."""
        validate_queue_name(name)
        found = await self.get_queue(name)
        if found is not None:
            return found
        fresh = QueueState(name=name, version=1, updated_at=datetime.now(UTC))
        try:
            async with self._tx() as conn:
                await conn.execute(insert(queues).values(**convert.queue_values(fresh)))
        except IntegrityError:
            pass
        found = await self.get_queue(name)
        assert found is not None
        return found

    async def list_queues(self) -> list[QueueState]:
        async with self._tx() as conn:
            rows = (await conn.execute(select(queues).order_by(queues.c.queue))).mappings().all()
        return [convert.queue_from_row(r) for r in rows]

    async def update_queue(self, old: QueueState, new: QueueState) -> QueueState:
        await self._cas(
            queues, [queues.c.queue == old.name], old.version, convert.queue_values(new)
        )
        return new

    # Requests -----------------------------------------------------------

    async def next_request_number(self, queue: str) -> int:
        """The next value of the Queue's counter; unique under concurrency, gaps allowed."""
        stmt = (
            update(request_counters)
            .where(request_counters.c.queue == queue)
            .values(value=request_counters.c.value + 1)
            .returning(request_counters.c.value)
        )
        for _ in range(3):
            async with self._tx() as conn:
                value = (await conn.execute(stmt)).scalar_one_or_none()
            if value is not None:
                return int(value)
            try:
                async with self._tx() as conn:
                    await conn.execute(insert(request_counters).values(queue=queue, value=0))
            except IntegrityError:
                pass
        raise StorageError(f"could not advance the request counter of {queue}")

    async def create_request(
        self, queue: str, uri: str, *, trigger: str, now: datetime
    ) -> tuple[Request, bool]:
        """Create the Request for ``(queue, uri)``, or return the existing one (``False``)."""
        validate_queue_name(queue)
        existing = await self.find_request(queue, uri)
        if existing is not None:
            return existing, False
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
        )
        try:
            async with self._tx() as conn:
                await conn.execute(
                    insert(request_dedup).values(queue=queue, uri=uri, request_id=request.id)
                )
                await conn.execute(insert(requests).values(**convert.request_values(request)))
        except IntegrityError:
            existing = await self.find_request(queue, uri)
            if existing is None:
                raise
            return existing, False
        return request, True

    async def get_request(self, request_id: str) -> Request | None:
        rid = RequestId.parse(request_id)
        async with self._tx() as conn:
            row = (
                (
                    await conn.execute(
                        select(requests).where(requests.c.queue == rid.queue, requests.c.n == rid.n)
                    )
                )
                .mappings()
                .first()
            )
        return convert.request_from_row(row) if row else None

    async def find_request(self, queue: str, uri: str) -> Request | None:
        async with self._tx() as conn:
            rid = (
                await conn.execute(
                    select(request_dedup.c.request_id).where(
                        request_dedup.c.queue == queue, request_dedup.c.uri == uri
                    )
                )
            ).scalar_one_or_none()
        return await self.get_request(rid) if rid else None

    async def update_request(self, old: Request, new: Request) -> Request:
        rid = old.request_id
        await self._cas(
            requests,
            [requests.c.queue == rid.queue, requests.c.n == rid.n],
            old.version,
            convert.request_values(new),
        )
        return new

    async def list_requests(
        self,
        queue: str,
        *,
        states: Iterable[RequestState] | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[Request]:
        stmt = select(requests).where(requests.c.queue == queue)
        if states is not None:
            stmt = stmt.where(requests.c.state.in_([s.value for s in states]))
        order = requests.c.n.desc() if newest_first else requests.c.n.asc()
        async with self._tx() as conn:
            rows = (await conn.execute(stmt.order_by(order).limit(limit))).mappings().all()
        return [convert.request_from_row(r) for r in rows]

    async def list_unfinished_requests(
        self, updated_before: datetime, limit: int = 100
    ) -> list[Request]:
        """Non-terminal Requests unchanged since ``updated_before`` (for the sweeper)."""
        terminal = [s.value for s in TERMINAL_STATES]
        stmt = (
            select(requests)
            .where(~requests.c.state.in_(terminal), requests.c.updated_at < updated_before)
            .order_by(requests.c.updated_at)
            .limit(limit)
        )
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [convert.request_from_row(r) for r in rows]

    # Builds -------------------------------------------------------------

    async def create_build(self, build: Build) -> Build:
        try:
            async with self._tx() as conn:
                await conn.execute(insert(builds).values(**convert.build_values(build)))
        except IntegrityError:
            existing = await self.get_build(build.queue, build.build_id)
            raise AlreadyExists(f"build {build.build_id} exists", existing) from None
        return build

    async def get_build(self, queue: str, build_id: str) -> Build | None:
        async with self._tx() as conn:
            row = (
                (
                    await conn.execute(
                        select(builds).where(builds.c.queue == queue, builds.c.build_id == build_id)
                    )
                )
                .mappings()
                .first()
            )
        return convert.build_from_row(row) if row else None

    async def update_build(self, old: Build, new: Build) -> Build:
        await self._cas(
            builds,
            [builds.c.queue == old.queue, builds.c.build_id == old.build_id],
            old.version,
            convert.build_values(new),
        )
        return new

    # Facts --------------------------------------------------------------

    async def create_fact(self, fact: ValidationFact) -> ValidationFact:
        """Create-only: an existing fact is never overwritten (``AlreadyExists.existing``)."""
        try:
            async with self._tx() as conn:
                await conn.execute(insert(validation_facts).values(**convert.fact_values(fact)))
        except IntegrityError:
            existing = await self.get_fact(fact.queue, fact.uri, fact.project)
            raise AlreadyExists(f"{fact.uri} already has a fact", existing) from None
        return fact

    async def get_fact(self, queue: str, uri: str, project: str) -> ValidationFact | None:
        c = validation_facts.c
        async with self._tx() as conn:
            row = (
                (
                    await conn.execute(
                        select(validation_facts).where(
                            c.queue == queue, c.uri == uri, c.project == project
                        )
                    )
                )
                .mappings()
                .first()
            )
        return convert.fact_from_row(row) if row else None

    async def list_facts(
        self, queue: str, project: str, *, page_size: int, page_token: str = ""
    ) -> tuple[list[ValidationFact], str]:
        """Newest first; the token is opaque to callers."""
        offset = _decode_token(page_token)
        c = validation_facts.c
        stmt = (
            select(validation_facts)
            .where(c.queue == queue, c.project == project)
            .order_by(c.created_at.desc(), c.uri)
            .offset(offset)
            .limit(page_size + 1)
        )
        async with self._tx() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        facts = [convert.fact_from_row(r) for r in rows[:page_size]]
        token = _encode_token(offset + page_size) if len(rows) > page_size else ""
        return facts, token

    async def count_facts(self, queue: str) -> int:
        async with self._tx() as conn:
            value = (
                await conn.execute(
                    select(func.count())
                    .select_from(validation_facts)
                    .where(validation_facts.c.queue == queue)
                )
            ).scalar_one()
        return int(value)

    # CAS ------------------------------------------------------------------

    async def _cas(
        self, table: Table, key: list[Any], old_version: int, values: dict[str, Any]
    ) -> None:
        if values["version"] != old_version + 1:
            raise StorageError(
                f"{table.name}: a CAS must write version {old_version + 1}, got {values['version']}"
            )
        stmt = update(table).where(and_(*key, table.c.version == old_version)).values(**values)
        async with self._tx() as conn:
            result = await conn.execute(stmt)
        if result.rowcount != 1:
            raise VersionMismatch(f"{table.name}: version {old_version} is no longer current")


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode()


def _decode_token(token: str) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        if not text.startswith("o"):
            raise ValueError(text)
        return max(0, int(text[1:]))
    except (ValueError, UnicodeDecodeError):
        from stovepipe.domain import InvalidInput

        raise InvalidInput("page_token is not one this server issued") from None
