"""Delivery after a delay on Kafka: fixed-delay tier topics and their forwarder."""

from stovepipe.delays.forwarder import DelayForwarder
from stovepipe.delays.tiers import (
    DEFAULT_TIERS_S,
    HEADER_NOT_BEFORE,
    HEADER_TARGET,
    choose_tier,
    tier_topic,
)

__all__ = [
    "DEFAULT_TIERS_S",
    "HEADER_NOT_BEFORE",
    "HEADER_TARGET",
    "DelayForwarder",
    "choose_tier",
    "tier_topic",
]
