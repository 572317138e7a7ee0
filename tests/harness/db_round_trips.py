"""Count a Store's database round trips: connections taken from its pool, and statements.

Every Store method runs on one connection for one transaction (or one
autocommit read), so the pool's ``checkout`` events count transactions; the
``before_cursor_execute`` events count statements. A count, not a timing: it
is the same on a loaded machine as on an idle one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from stovepipe.storage import Store


@dataclass
class RoundTrips:
    transactions: int = 0
    statements: int = 0
    by_verb: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    """Each statement's first words, in order (to explain a count that grew)."""


@contextmanager
def counting(store: Store) -> Iterator[RoundTrips]:
    trips = RoundTrips()
    engine = store.engine.sync_engine

    def on_checkout(*_args: Any) -> None:
        trips.transactions += 1
        trips.log.append("-- transaction")

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        trips.statements += 1
        words = statement.split()
        trips.by_verb[words[0].upper() if words else "?"] += 1
        trips.log.append(" ".join(words[:6]))

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield trips
    finally:
        event.remove(engine, "checkout", on_checkout)
        event.remove(engine, "before_cursor_execute", on_execute)
