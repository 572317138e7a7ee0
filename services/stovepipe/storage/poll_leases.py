"""Poll leases: which poller replica polls which Queue, until when, and each Queue's backoff.

One row per polled Queue. A replica *acquires* Queues with a conditional
UPDATE (a compare-and-swap on each row) that takes only the leases that have
expired or are already its own; from then on it alone polls those Queues. It
acquires and renews all its leases together, a few statements per renewal
period however many Queues there are. A tick
therefore costs the holder no write at all: the head it last saw, the failure
count and the backoff are written only when they change. A replica that dies
holds its Queues until their leases expire; one that stops releases them.

Every write is conditioned on ``holder``, so a replica that lost a lease (it
expired while the replica was stalled) can no longer change the row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stovepipe.storage.errors import translate
from stovepipe.storage.tables import poll_leases

NEVER = datetime(1970, 1, 1, tzinfo=UTC)
_BATCH = 500
"""Queues per statement: far below every backend's limit on bound parameters."""


@dataclass(frozen=True, slots=True)
class PollLease:
    """A replica's hold on one Queue, as stored when it was acquired."""

    queue: str
    holder: str
    expires_at: datetime
    previous_expiry: datetime
    """When the lease before this one ended (``NEVER`` for a Queue never polled)."""
    head_uri: str | None
    failures: int
    not_before: datetime


@dataclass(frozen=True, slots=True)
class Note:
    """What the holder last learnt about a Queue, to be written with the next round."""

    head_uri: str | None
    failures: int
    not_before: datetime
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class Taken:
    """Another replica holds the Queue until ``expires_at``."""

    holder: str
    expires_at: datetime


class PollLeases:
    """Acquire, renew, release and annotate leases; each call is one short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    async def acquire(
        self, queues: Iterable[str], holder: str, *, now: datetime, ttl_s: float
    ) -> tuple[dict[str, PollLease], dict[str, Taken]]:
        """Take every Queue of ``queues`` that is free (or already ``holder``'s), in a few
        statements whatever their number; returns the leases taken, and who holds the rest
        and until when."""
        names = list(dict.fromkeys(queues))
        taken: dict[str, PollLease] = {}
        others: dict[str, Taken] = {}
        for start in range(0, len(names), _BATCH):
            batch = names[start : start + _BATCH]
            got, held = await self._acquire_batch(batch, holder, now=now, ttl_s=ttl_s)
            taken.update(got)
            others.update(held)
        return taken, others

    async def _acquire_batch(
        self, names: list[str], holder: str, *, now: datetime, ttl_s: float
    ) -> tuple[dict[str, PollLease], dict[str, Taken]]:
        c = poll_leases.c
        async with self._transaction() as conn:
            await conn.execute(self._insert_absent(names))
            previous = {
                row.queue: row
                for row in await conn.execute(
                    select(c.queue, c.holder, c.expires_at)
                    .where(c.queue.in_(names))
                    .with_for_update()
                )
            }
            rows = await conn.execute(
                update(poll_leases)
                .where(c.queue.in_(names), or_(c.expires_at <= now, c.holder == holder))
                .values(holder=holder, expires_at=now + timedelta(seconds=ttl_s))
                .returning(c.queue, c.expires_at, c.head_uri, c.failures, c.not_before)
            )
            got: dict[str, PollLease] = {}
            for row in rows:
                before = previous[row.queue]
                # A released lease (no holder) or our own: nobody else may have polled lately.
                ended = before.expires_at if before.holder not in ("", holder) else NEVER
                got[row.queue] = PollLease(
                    row.queue, holder, row.expires_at, ended, row.head_uri, row.failures,
                    row.not_before,
                )  # fmt: skip
        others = {
            name: Taken(row.holder, row.expires_at)
            for name, row in previous.items()
            if name not in got
        }
        return got, others

    async def renew(
        self, holder: str, queues: Iterable[str], *, now: datetime, ttl_s: float
    ) -> set[str]:
        """Extend ``holder``'s unexpired leases on ``queues`` (one statement); returns the
        Queues it still holds."""
        names = list(queues)
        kept: set[str] = set()
        c = poll_leases.c
        for start in range(0, len(names), _BATCH):
            async with self._transaction() as conn:
                rows = await conn.execute(
                    update(poll_leases)
                    .where(
                        c.queue.in_(names[start : start + _BATCH]),
                        c.holder == holder,
                        c.expires_at > now,
                    )
                    .values(expires_at=now + timedelta(seconds=ttl_s))
                    .returning(c.queue)
                )
                kept.update(row.queue for row in rows)
        return kept

    async def release(self, holder: str, queues: Iterable[str], *, now: datetime) -> None:
        """Let another replica take ``queues`` at once (a clean stop); the next holder
        polls at once, as a restarted poller does."""
        names = list(queues)
        c = poll_leases.c
        for start in range(0, len(names), _BATCH):
            async with self._transaction() as conn:
                await conn.execute(
                    update(poll_leases)
                    .where(c.queue.in_(names[start : start + _BATCH]), c.holder == holder)
                    .values(holder="", expires_at=now)
                )

    async def record(self, holder: str, notes: Mapping[str, Note]) -> None:
        """Write what ``holder`` learnt about its Queues (head last seen, failures, backoff),
        all in one transaction; rows it no longer holds are left alone."""
        if not notes:
            return
        c = poll_leases.c
        statement = (
            update(poll_leases)
            .where(c.queue == bindparam("q"), c.holder == holder)
            .values(
                head_uri=bindparam("head"),
                failures=bindparam("fails"),
                not_before=bindparam("after"),
                last_error=bindparam("error"),
            )
        )
        rows = [
            {
                "q": name,
                "head": note.head_uri,
                "fails": note.failures,
                "after": note.not_before,
                "error": note.last_error[:1000],
            }
            for name, note in notes.items()
        ]
        async with self._transaction() as conn:
            await conn.execute(statement, rows)

    async def head_of(self, queue: str) -> str | None:
        """The head the poller last saw for ``queue``."""
        async with self._transaction() as conn:
            value: str | None = (
                await conn.execute(
                    select(poll_leases.c.head_uri).where(poll_leases.c.queue == queue)
                )
            ).scalar_one_or_none()
        return value

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.begin() as conn:
                yield conn
        except Exception as exc:
            mapped = translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _insert_absent(self, names: list[str]) -> postgresql.Insert | sqlite.Insert:
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        rows = [
            {
                "queue": name,
                "holder": "",
                "expires_at": NEVER,
                "head_uri": None,
                "failures": 0,
                "not_before": NEVER,
                "last_error": "",
            }
            for name in names
        ]
        return (
            insert(poll_leases)
            .values(rows)
            .on_conflict_do_nothing(index_elements=[poll_leases.c.queue])
        )
