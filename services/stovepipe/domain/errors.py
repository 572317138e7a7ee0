"""Domain errors.

Hierarchy::

    StovepipeError
    ├── InvalidInput            bad input from a caller; never retried
    │   └── InvalidQueueName
    ├── IllegalTransition       a state change the lifecycle forbids (an invariant)
    ├── NotFound                the thing a caller named does not exist
    └── Refused                 a valid request the current state does not allow
    └── (storage errors live in stovepipe.storage.errors)

Messaging classifies these at its boundary: ``InvalidInput`` and
``IllegalTransition`` are non-retryable. The API maps ``NotFound`` to
NOT_FOUND and ``Refused`` to FAILED_PRECONDITION, whose message says what
would make the call acceptable.
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


class NotFound(StovepipeError):
    """The caller named something (a commit, a Request) that Stovepipe does not have."""


class Refused(StovepipeError):
    """The call is well formed but the current state forbids it; the message says why."""
