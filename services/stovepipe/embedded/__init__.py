"""Embedded infrastructure for ``stovepipe up`` and the tests."""

from stovepipe.embedded.broker import BrokerUnavailable, EmbeddedBroker

__all__ = ["BrokerUnavailable", "EmbeddedBroker"]
