"""Slow a consumer's fetches down while it has nothing to do, and speed them up on data.

Why: a fetch's wait (``fetch_max_wait_ms``) is the latency floor of a hop
against the embedded broker, which answers a waiting fetch only when the wait
runs out, so it is kept at tens of milliseconds. That makes every idle consumer
ask the broker ~50 times a second, and an idle ``stovepipe up`` spends a third
of a core on questions whose answer is "nothing". A real Kafka cluster answers
a waiting fetch as soon as data arrives, so a long wait costs it nothing either.

How: each paced consumer starts fast. A timer (one per process, firing every
``idle_after_s / 2``, never busier) moves a consumer that has delivered nothing
for ``idle_after_s`` to ``idle_wait_ms``; :meth:`FetchPacer.active` moves it
back the moment a record arrives. The cost is on the first record after a quiet
spell: it waits up to ``idle_wait_ms`` per hop, once. A steady stream of work
never slows down.

The wait is read by aiokafka's fetcher each time it builds a fetch request
(``Fetcher._fetch_max_wait_ms``); that attribute is the one private piece this
relies on, and :func:`_fetcher` fails loudly if a new aiokafka renames it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Iterator
from typing import Any

_FETCHER_WAIT = "_fetch_max_wait_ms"


def _fetcher(consumer: Any) -> Any:
    """The consumer's fetcher, once started; ``None`` before that."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None and not hasattr(fetcher, _FETCHER_WAIT):
        raise RuntimeError(
            f"aiokafka's fetcher has no {_FETCHER_WAIT}; stovepipe.messaging.pacing needs updating"
        )
    return fetcher


class FetchPacer:
    """Fast fetches while records flow, slow ones after ``idle_after_s`` without any."""

    def __init__(self, busy_wait_ms: int, idle_wait_ms: int, idle_after_s: float) -> None:
        self.busy_wait_ms = busy_wait_ms
        self.idle_wait_ms = max(idle_wait_ms, busy_wait_ms)
        self.idle_after_s = idle_after_s
        self._last: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._handling: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._busy: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._timer: asyncio.TimerHandle | None = None
        self.ticks = 0
        """How often the idle check ran (tests wait on it instead of sleeping)."""

    @property
    def enabled(self) -> bool:
        return self.idle_wait_ms > self.busy_wait_ms and self.idle_after_s > 0

    def track(self, consumer: Any, busy_wait_ms: int | None = None) -> None:
        """Pace ``consumer`` from now on (a started aiokafka consumer; others are ignored);
        ``busy_wait_ms`` is its own wait while records flow, if not the pacer's."""
        if not self.enabled or _fetcher(consumer) is None:
            return
        if busy_wait_ms is not None:
            self._busy[consumer] = busy_wait_ms
        self._last[consumer] = time.monotonic()
        self._set(consumer, self._busy_wait(consumer))
        self._arm()

    def active(self, consumer: Any) -> None:
        """A record arrived on ``consumer``: fetch fast again."""
        if not self.enabled:
            return
        if consumer not in self._last:
            self.track(consumer)
            return
        self._last[consumer] = time.monotonic()
        self._set(consumer, self._busy_wait(consumer))

    def _busy_wait(self, consumer: Any) -> int:
        return self._busy.get(consumer, self.busy_wait_ms)

    @contextlib.contextmanager
    def handling(self, consumer: Any) -> Iterator[None]:
        """A record of ``consumer`` is being handled: it is not idle until the handler
        returns (a consumer slowed under a long handler would, among other things, make
        its shutdown wait for a slow fetch), and the quiet period starts afterwards."""
        self.active(consumer)
        self._handling[consumer] = self._handling.get(consumer, 0) + 1
        try:
            yield
        finally:
            left = self._handling.get(consumer, 1) - 1
            if left:
                self._handling[consumer] = left
            else:
                self._handling.pop(consumer, None)
            self.active(consumer)

    @property
    def tracked(self) -> int:
        """How many consumers are paced."""
        return len(self._last)

    def wait_ms(self, consumer: Any) -> int | None:
        """The wait ``consumer``'s next fetch asks for (for tests and the benchmark)."""
        fetcher = _fetcher(consumer)
        return None if fetcher is None else int(getattr(fetcher, _FETCHER_WAIT))

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._last.clear()

    def _arm(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.idle_after_s / 2, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.ticks += 1
        quiet_since = time.monotonic() - self.idle_after_s
        for consumer, last in list(self._last.items()):
            if last <= quiet_since and consumer not in self._handling:
                self._set(consumer, max(self.idle_wait_ms, self._busy_wait(consumer)))
        if self._last:
            self._arm()

    @staticmethod
    def _set(consumer: Any, wait_ms: int) -> None:
        fetcher = _fetcher(consumer)
        if fetcher is not None:
            setattr(fetcher, _FETCHER_WAIT, wait_ms)
