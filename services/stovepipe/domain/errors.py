"""Domain errors.

Hierarchy::

    StovepipeError
    ├── InvalidInput            bad input from a caller; never retried
    │   └── InvalidQueueName
    ├── IllegalTransition       a state change the lifecycle forbids (an invariant)
    └── (storage errors live in stovepipe.storage.errors)

Messaging classifies these at its boundary: ``InvalidInput`` and
``IllegalTransition`` are non-retryable.
"""

from __future__ import annotations


class StovepipeError(Exception):
    """Base of every error Stovepipe raises on purpose."""


class InvalidInput(StovepipeError, ValueError):
    """The caller sent something that can never succeed as sent."""


class InvalidQueueName(InvalidInput):
    """A Queue name breaks the naming rules; the message says which rule."""


class IllegalTransition(StovepipeError):
    """A Request was asked to move between two states the lifecycle does not connect."""
