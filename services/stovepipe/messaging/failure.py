"""The one place that decides what happens to a record whose handler failed.

The consumer wiring catches every exception a handler (or the codec) raises
and asks the :data:`FailurePolicy` for an :class:`Outcome`; it never decides
on its own. Replacing the policy is how retries through delay tiers and dead
letters are added: such a policy produces the record elsewhere, awaits the
broker's ack, and only then answers ``SETTLED`` so the original is committed.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable

from stovepipe.messaging.delivery import Delivery
from stovepipe.messaging.topics import TopicSpec


class Outcome(enum.Enum):
    REDELIVER = "redeliver"
    """Nothing is committed past the record; it is delivered again after a short pause."""
    SETTLED = "settled"
    """The policy has taken care of the record (rerouted it): commit past it."""


FailurePolicy = Callable[[BaseException, TopicSpec, Delivery], Awaitable[Outcome]]
"""``(error, topic binding, delivery) -> outcome``; an error inside the policy means redeliver."""


async def redeliver(_error: BaseException, _topic: TopicSpec, _delivery: Delivery) -> Outcome:
    """The default: every failure is retried in place, nothing is ever skipped."""
    return Outcome.REDELIVER
