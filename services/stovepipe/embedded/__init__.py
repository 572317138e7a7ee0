"""Embedded infrastructure for ``stovepipe up`` and the tests."""

from stovepipe.embedded.broker import BrokerUnavailable, EmbeddedBroker, tansu_binary

__all__ = ["BrokerUnavailable", "EmbeddedBroker", "tansu_binary"]
