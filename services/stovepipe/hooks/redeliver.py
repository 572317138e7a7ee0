"""An operator's redelivery: a delivery goes back in line for a fresh round of attempts.

It keeps its event and its id (receivers deduplicate on the id, and a webhook
keeps its ``webhook-id``), so redelivering something that did arrive is
harmless. Redelivering to a subscription disabled by a 410 Gone re-enables it:
the operator is saying the target is back.
"""

from __future__ import annotations

from datetime import UTC, datetime

from stovepipe.storage import HookDelivery, Store, VersionMismatch


async def redeliver(store: Store, delivery: HookDelivery) -> HookDelivery:
    """Put ``delivery`` back to pending with its attempts reset; a pending one is left as is."""
    await store.enable_hook_subscription(delivery.queue, delivery.hook)
    current: HookDelivery | None = delivery
    for _ in range(5):
        if current is None or not current.status.terminal:
            return current or delivery
        try:
            return await store.update_hook_delivery(
                current, current.requeued(now=datetime.now(UTC))
            )
        except VersionMismatch:
            current = await store.get_hook_delivery(
                delivery.queue, delivery.event_id, delivery.hook
            )
    raise VersionMismatch(f"{delivery.id} kept changing; try again")
