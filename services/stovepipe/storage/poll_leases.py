"""Poll leases: which poller replica polls which Queue at which tick, and each Queue's backoff.

One row per polled Queue. A replica *claims* tick ``t`` of a Queue with one
conditional UPDATE (a compare-and-swap on the row): it succeeds only when the
stored tick is older than ``t``, the Queue is not backing off, and the previous
claim has expired or was this replica's. Exactly one replica wins each tick,
whatever the number of replicas and however their clocks tick, so a Queue is
never polled twice per tick; a replica that dies mid-poll holds the Queue only
until its lease expires.

The claim is the only write of a poll whose head did not move. The head last
seen and the error backoff are written only when they change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stovepipe.storage.errors import translate
from stovepipe.storage.tables import poll_leases

_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PollLease:
    """A claim on one tick of one Queue."""

    queue: str
    holder: str
    tick: int
    head_uri: str | None
    failures: int


class PollLeases:
    """Claims and releases over ``poll_leases``; each call is one short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    async def claim(
        self, queue: str, holder: str, tick: int, *, now: datetime, ttl_s: float
    ) -> PollLease | None:
        """The lease on ``tick`` of ``queue`` for ``holder``, or None when another replica
        has it, a newer tick was already claimed, or the Queue is backing off."""
        c = poll_leases.c
        expires = now + timedelta(seconds=ttl_s)
        async with self._transaction() as conn:
            await conn.execute(self._insert_absent(queue))
            result = await conn.execute(
                update(poll_leases)
                .where(
                    c.queue == queue,
                    c.tick < tick,
                    c.not_before <= now,
                    or_(c.expires_at <= now, c.holder == holder),
                )
                .values(holder=holder, tick=tick, expires_at=expires)
                .returning(c.head_uri, c.failures)
            )
            row = result.first()
        if row is None:
            return None
        return PollLease(queue, holder, tick, row.head_uri, row.failures)

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

    def _insert_absent(self, queue: str) -> postgresql.Insert | sqlite.Insert:
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        return (
            insert(poll_leases)
            .values(
                queue=queue,
                holder="",
                expires_at=_NEVER,
                tick=-1,
                head_uri=None,
                failures=0,
                not_before=_NEVER,
                last_error="",
            )
            .on_conflict_do_nothing(index_elements=[poll_leases.c.queue])
        )

    async def succeeded(self, lease: PollLease, head_uri: str, *, now: datetime) -> None:
        """Remember the head and release the lease; nothing is written when the head
        did not move and the Queue was not backing off (the claim already ended the tick)."""
        if lease.head_uri == head_uri and lease.failures == 0:
            return
        await self._update(
            lease,
            head_uri=head_uri,
            failures=0,
            not_before=_NEVER,
            last_error="",
            expires_at=now,
        )

    async def failed(self, lease: PollLease, error: str, backoff_s: float, *, now: datetime) -> int:
        """Count a SourceControl failure and keep every replica off the Queue for
        ``backoff_s``; returns the failure count."""
        failures = lease.failures + 1
        await self._update(
            lease,
            failures=failures,
            not_before=now + timedelta(seconds=backoff_s),
            last_error=error[:1000],
            expires_at=now,
        )
        return failures

    async def forget(self, queue: str) -> None:
        """Drop what is known of ``queue`` (the next poll starts afresh)."""
        async with self._transaction() as conn:
            await conn.execute(poll_leases.delete().where(poll_leases.c.queue == queue))

    async def head_of(self, queue: str) -> str | None:
        """The head the poller last saw for ``queue``."""
        async with self._transaction() as conn:
            return (
                await conn.execute(
                    select(poll_leases.c.head_uri).where(poll_leases.c.queue == queue)
                )
            ).scalar_one_or_none()

    async def _update(self, lease: PollLease, **values: object) -> None:
        """Write only while ``lease`` is still the current claim (a later tick wins)."""
        c = poll_leases.c
        async with self._transaction() as conn:
            await conn.execute(
                update(poll_leases)
                .where(c.queue == lease.queue, c.holder == lease.holder, c.tick == lease.tick)
                .values(**values)
            )
