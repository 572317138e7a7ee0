"""Fixed-delay tier topics and how a delay is mapped onto one.

A tier topic only ever holds messages with the same delay, appended in time
order, so their due times are monotonic and the forwarder can wait on the head
of each partition without starving anything behind it. A requested delay is
rounded *up* to the next tier: a delay is a lower bound, never early.
"""

from __future__ import annotations

from stovepipe.messaging import headers as hdr

DEFAULT_TIERS_S: tuple[float, ...] = (0.2, 1.0, 5.0, 30.0, 120.0)

HEADER_TARGET = hdr.TARGET_TOPIC
HEADER_NOT_BEFORE = hdr.NOT_BEFORE


def tier_topic(seconds: float, prefix: str = "") -> str:
    label = f"{int(seconds)}s" if seconds >= 1 else f"{int(seconds * 1000)}ms"
    return f"{prefix}stovepipe.delay.{label}"


def choose_tier(delay_s: float, tiers: tuple[float, ...] = DEFAULT_TIERS_S) -> float:
    """The smallest tier not shorter than ``delay_s`` (the longest tier beyond that)."""
    if not tiers:
        raise ValueError("at least one delay tier is needed")
    ordered = sorted(tiers)
    for tier in ordered:
        if tier >= delay_s:
            return tier
    return ordered[-1]
