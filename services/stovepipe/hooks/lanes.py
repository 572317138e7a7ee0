"""Delivery lanes: one per (Queue, subscription), each on its own, all from storage.

A lane sends its subscription's pending deliveries one at a time in event
order (``position``): the next one is not sent before the one ahead of it is
delivered or has failed for good. That is the ordering promise; it is also why
retries are timed here, from the row's ``next_attempt_at``, and not through
the delay-tier topics, which would let a later event overtake an earlier one.

Lanes never wait on each other: a subscriber that takes ten seconds per
request, or never answers, holds back only its own lane, and the pipeline
never waits on any lane (``record`` only publishes to the topic).

Every attempt is first *claimed* with a CAS on the row — ``next_attempt_at``
moved to the end of a lease that outlasts the attempt — and its outcome then
recorded with a second CAS. That is what makes several dispatcher replicas
safe: each runs every lane it finds work for, but only the replica whose claim
wins sends; the others see the head of the lane due later and wait, so one
delivery is never sent by two replicas at once, and a lane's next delivery is
not sent while the one ahead of it is in flight anywhere. A dispatcher killed
between sending and recording leaves the row pending and due at the lease's
end, when any replica (or the same one restarted) sends it again: delivery is
at least once, and receivers deduplicate on the event id (a webhook keeps its
``webhook-id``). The lease assumes the replicas' clocks agree within
:data:`LEASE_MARGIN_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from stovepipe.config import StovepipeConfig
from stovepipe.config.hooks import HookConfig
from stovepipe.domain.errors import StovepipeError
from stovepipe.extensions.hooks.client import DeliverResult, HooksClient, Outcome
from stovepipe.storage import HookDelivery, HookDeliveryStatus, Store, VersionMismatch
from stovepipe.v1 import topics_pb2

log = logging.getLogger(__name__)

RESCAN_S = 1.0
"""How often storage is asked which lanes have work: deliveries an operator put
back in line, and whatever was pending when the dispatcher last stopped."""
RPC_MARGIN_S = 5.0
LEASE_MARGIN_S = 10.0
"""How much longer than the attempt's own deadline a claim lasts: time to record
the outcome, event-loop stalls, and clock differences between replicas."""


def delivery_id(delivery: HookDelivery) -> str:
    """The id a receiver sees (``webhook-id``): the same on every attempt of one delivery."""
    return f"msg_{delivery.event_id}_{delivery.hook}"


class Lanes:
    """Runs a lane task per (Queue, subscription) with pending deliveries."""

    def __init__(
        self,
        store: Store,
        config: StovepipeConfig,
        clients: Callable[[str], HooksClient],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._config = config
        self._clients = clients
        self._clock = clock
        self._lanes: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._wakes: dict[tuple[str, str], asyncio.Event] = {}
        self._stopping = False

    def wake(self, queue: str, hook: str) -> None:
        """There may be new work for this lane: start it, or cut its wait short."""
        key = (queue, hook)
        self._wakes.setdefault(key, asyncio.Event()).set()
        task = self._lanes.get(key)
        if (task is None or task.done()) and not self._stopping:
            self._lanes[key] = asyncio.create_task(self._lane(queue, hook), name=f"hook {key}")

    async def run(self, stop: asyncio.Event) -> None:
        """Rescan storage for lanes with work until ``stop`` is set, then stop every lane."""
        try:
            while not stop.is_set():
                try:
                    for queue, hook in await self._store.pending_hook_subscriptions():
                        self.wake(queue, hook)
                except Exception:  # storage blips: the next scan tries again
                    log.exception("scanning for pending hook deliveries failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RESCAN_S)
        finally:
            await self.close()

    async def close(self) -> None:
        self._stopping = True
        tasks = list(self._lanes.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _hook(self, queue: str, name: str) -> HookConfig | None:
        try:
            return self._config.queue(queue).hook(name)
        except StovepipeError:
            return None

    async def _lane(self, queue: str, name: str) -> None:
        wake = self._wakes.setdefault((queue, name), asyncio.Event())
        while True:
            wake.clear()
            try:
                delivery = await self._store.next_hook_delivery(queue, name)
            except Exception:
                log.exception("%s hook %s: reading the next delivery failed", queue, name)
                await _wait(wake, RESCAN_S)
                continue
            if delivery is None:
                return  # the lane ends; new work starts it again
            due = delivery.next_attempt_at
            now = self._clock()
            if due is not None and due > now:
                await _wait(wake, (due - now).total_seconds())
                continue
            try:
                await self._attempt(delivery)
            except VersionMismatch:
                continue  # another replica claimed it, or an operator changed it: read again
            except Exception:
                log.exception("%s: recording the attempt failed; it will be made again",
                              delivery.id)  # fmt: skip
                await _wait(wake, RESCAN_S)

    async def _attempt(self, delivery: HookDelivery) -> None:
        hook = self._hook(delivery.queue, delivery.hook)
        now = self._clock()
        if hook is None:
            await self._settle(delivery, "the subscription is no longer configured")
            return
        disabled = await self._store.hook_subscription_disabled(delivery.queue, delivery.hook)
        if disabled is not None:
            await self._settle(delivery, f"subscription disabled: {disabled}")
            return
        rpc_timeout_s = hook.timeout_seconds + RPC_MARGIN_S
        lease = timedelta(seconds=rpc_timeout_s + LEASE_MARGIN_S)
        claimed = delivery.claimed(now=now, until=now + lease)
        await self._store.update_hook_delivery(delivery, claimed)  # lost: another replica has it
        delivery = claimed
        log.info("sending hook delivery %s, attempt %d (claimed until %s)",
                 delivery.id, delivery.attempts + 1, claimed.next_attempt_at)  # fmt: skip
        event = topics_pb2.HookEvent()
        event.ParseFromString(delivery.event)
        try:
            client = self._clients(hook.kind)
        except StovepipeError as exc:  # no address for the kind: retried like a down server
            result = DeliverResult(Outcome.RETRY, str(exc))
        else:
            result = await client.deliver(
                event,
                queue=delivery.queue,
                hook=delivery.hook,
                delivery_id=delivery_id(delivery),
                timeout_s=rpc_timeout_s,
            )
        now = self._clock()
        updated = _after(delivery, hook, result, now)
        await self._store.update_hook_delivery(delivery, updated)
        if result.outcome is Outcome.GONE:
            await self._store.disable_hook_subscription(
                delivery.queue, delivery.hook, f"the receiver answered {result.detail}", now
            )
            log.error("%s hook %s disabled: the receiver answered %s; "
                      "`stovepipe hooks redeliver` re-enables it",
                      delivery.queue, delivery.hook, result.detail)  # fmt: skip
        log.info("hook delivery %s attempt %d: %s (%s)", delivery.id, updated.attempts,
                 updated.status.value, result.detail)  # fmt: skip

    async def _settle(self, delivery: HookDelivery, why: str) -> None:
        await self._store.update_hook_delivery(
            delivery, delivery.settled(HookDeliveryStatus.FAILED, now=self._clock(), error=why)
        )
        log.warning("hook delivery %s failed without an attempt: %s", delivery.id, why)


def _after(
    delivery: HookDelivery, hook: HookConfig, result: DeliverResult, now: datetime
) -> HookDelivery:
    """The row after one attempt that came back with ``result``."""
    if result.outcome is Outcome.DELIVERED:
        return delivery.with_attempt(HookDeliveryStatus.DELIVERED, now=now, error="")
    if result.outcome in (Outcome.FAILED, Outcome.GONE):
        return delivery.with_attempt(HookDeliveryStatus.FAILED, now=now, error=result.detail)
    attempts = delivery.attempts + 1
    if attempts >= hook.max_attempts:
        return delivery.with_attempt(
            HookDeliveryStatus.FAILED,
            now=now,
            error=f"gave up after {attempts} attempts; last: {result.detail}",
        )
    wait = max(hook.backoff(attempts), result.retry_after_s)
    return delivery.with_attempt(
        HookDeliveryStatus.PENDING,
        now=now,
        error=result.detail,
        next_attempt_at=now + timedelta(seconds=wait),
    )


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(0.0, seconds))
