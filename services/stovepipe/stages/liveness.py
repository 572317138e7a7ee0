"""How the sweeper tells a build that is still followed from an orphaned one.

The sweeper re-drives a ``processing`` Request unchanged for ``stale_after``
unless its Build row was touched within that same window. buildsignal touches
the Build while it follows it, but not on every poll (that would be a write per
poll per build): only on the first poll at least one *heartbeat* after the last
touch. Between two touches a followed Build therefore ages up to

    heartbeat + one poll period

where a poll period is the poll interval rounded up to a delay tier, plus the
forwarder's and the consumer's lag. The heartbeat must leave room for that
inside the window, or a long build that is polled perfectly well looks
orphaned: the sweeper re-drives it, build resumes polling it, and a second poll
chain runs beside the first.

:data:`HEARTBEATS_PER_STALE_WINDOW` = 3 puts the heartbeat at a third of the
window, which leaves two thirds for one poll period (200 s at the default
``stale_after`` of 300 s), and costs one Build write per 100 s of build.
"""

from __future__ import annotations

from datetime import timedelta

HEARTBEATS_PER_STALE_WINDOW = 3


def build_heartbeat(stale_after: timedelta) -> timedelta:
    """How often buildsignal must touch a Build it follows so the sweeper leaves it alone."""
    return stale_after / HEARTBEATS_PER_STALE_WINDOW
