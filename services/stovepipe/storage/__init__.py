"""Storage: SQLAlchemy 2 async over PostgreSQL (asyncpg) and SQLite (aiosqlite).

Schema changes go through :mod:`stovepipe.storage.migrate` (Alembic), which
is kept out of this namespace so that importing the store does not import
Alembic.
"""

from stovepipe.storage.engine import create_engine, is_sqlite, normalize_url
from stovepipe.storage.errors import (
    AlreadyExists,
    StorageError,
    StorageUnavailable,
    VersionMismatch,
    is_retryable,
)
from stovepipe.storage.hook_deliveries import HookDelivery, HookDeliveryStatus
from stovepipe.storage.store import Store

__all__ = [
    "AlreadyExists",
    "HookDelivery",
    "HookDeliveryStatus",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "VersionMismatch",
    "create_engine",
    "is_retryable",
    "is_sqlite",
    "normalize_url",
]
