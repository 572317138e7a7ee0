"""CAS loops on the Queue row, shared by every stage that touches it.

Each operation reloads the row, decides from what it sees, and writes with a
version check; on a lost race it tries again, a bounded number of times. Every
operation is a no-op when its effect is already present, which is what makes
the stages safe under redelivery.
"""

from __future__ import annotations

from collections.abc import Callable

from stovepipe.domain import QueueState, is_newer
from stovepipe.failures import Retryable
from stovepipe.stages.ports import Clock
from stovepipe.storage import Store, VersionMismatch

MAX_CAS_ATTEMPTS = 20


async def _update(
    store: Store, queue: str, change: Callable[[QueueState], QueueState | None]
) -> QueueState:
    for _ in range(MAX_CAS_ATTEMPTS):
        try:
            async with store.unit():  # the read and its compare-and-swap: one transaction
                current = await store.ensure_queue(queue)
                wanted = change(current)
                if wanted is None:
                    return current
                return await store.update_queue(current, wanted)
        except VersionMismatch:
            continue
    raise Retryable(f"queue {queue}: lost {MAX_CAS_ATTEMPTS} version races in a row")


async def advance_latest(store: Store, queue: str, request_id: str, clock: Clock) -> QueueState:
    """Make ``request_id`` the Queue's latest head unless a newer one is already there."""

    def change(q: QueueState) -> QueueState | None:
        if not is_newer(request_id, q.latest_request_id):
            return None
        return q.evolve(now=clock(), latest_request_id=request_id)

    return await _update(store, queue, change)


async def take_slot(
    store: Store, queue: str, request_id: str, max_concurrent: int, clock: Clock
) -> QueueState:
    """Take a build slot for ``request_id`` if one is free; the Queue as it is afterwards.

    The caller asks ``holds_slot(request_id)`` of the result: False means the
    gate is closed.
    """

    def change(q: QueueState) -> QueueState | None:
        if q.holds_slot(request_id) or q.in_flight_count >= max_concurrent:
            return None
        return q.with_slot_taken(request_id, now=clock())

    return await _update(store, queue, change)


async def release_slot(store: Store, queue: str, request_id: str, clock: Clock) -> QueueState:
    """Release ``request_id``'s slot; releasing a slot it does not hold changes nothing."""

    def change(q: QueueState) -> QueueState | None:
        if not q.holds_slot(request_id):
            return None
        return q.with_slot_released(request_id, now=clock())

    return await _update(store, queue, change)


async def advance_bookmark(
    store: Store, queue: str, request_id: str, uri: str, clock: Clock
) -> QueueState:
    """Move the last-green bookmark to ``uri`` unless a newer Request already holds it.

    Called only after the green fact is durable, so the bookmark never points
    at a commit without a fact; it moves forward only, by ingest order.
    """

    def change(q: QueueState) -> QueueState | None:
        if q.last_green_request_id == request_id:
            return None
        if not is_newer(request_id, q.last_green_request_id):
            return None
        return q.evolve(now=clock(), last_green_uri=uri, last_green_request_id=request_id)

    return await _update(store, queue, change)


async def note_promoted(
    store: Store, queue: str, promotion_ref: str, uri: str, clock: Clock
) -> QueueState:
    """Remember that ``promotion_ref`` is at (or past) ``uri`` after a successful Promote.

    Only while ``uri`` is still the bookmark: a newer bookmark notes its own
    promotion, so the note never runs behind the bookmark it describes.
    """

    def change(q: QueueState) -> QueueState | None:
        if q.last_green_uri != uri or not q.promotion_lags(promotion_ref):
            return None
        return q.evolve(now=clock(), promoted_ref=promotion_ref, promoted_uri=uri)

    return await _update(store, queue, change)
