"""Storage errors, and the one place driver exceptions are classified.

Hierarchy::

    StovepipeError
    └── StorageError
        ├── VersionMismatch     a CAS lost the race (retryable: reload and decide again)
        ├── AlreadyExists       a create-only row exists; ``.existing`` holds it
        └── StorageUnavailable  connection refused/lost, timeouts, SQLite busy (retryable)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc as sa_exc

from stovepipe.domain.errors import StovepipeError


class StorageError(StovepipeError):
    """Base of storage failures."""


class VersionMismatch(StorageError):
    """The row's version was not the one the writer read."""


class AlreadyExists(StorageError):
    """A create-only row already exists."""

    def __init__(self, message: str, existing: Any) -> None:
        super().__init__(message)
        self.existing = existing


class StorageUnavailable(StorageError):
    """The database cannot be reached or is busy; the same call may succeed later."""


_TRANSIENT_TEXT = (
    "database is locked",
    "connection",
    "timeout",
    "timed out",
    "server closed",
    "terminating",
    "could not serialize",
    "deadlock",
    "too many clients",
    "the database system is",
)


def translate(exc: BaseException) -> BaseException:
    """Map a driver/SQLAlchemy exception to ours; return it unchanged when it is not ours."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return StorageUnavailable(str(exc.orig))
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return StorageUnavailable(str(getattr(exc, "orig", exc)))
    if isinstance(exc, OSError | ConnectionError | TimeoutError):
        return StorageUnavailable(str(exc))
    text = str(exc).lower()
    if isinstance(exc, sa_exc.DBAPIError) and any(t in text for t in _TRANSIENT_TEXT):
        return StorageUnavailable(str(exc.orig))
    return exc


def is_retryable(exc: BaseException) -> bool:
    """True for errors a retry may cure: lost races and an unavailable database."""
    mapped = translate(exc)
    return isinstance(mapped, VersionMismatch | StorageUnavailable)
