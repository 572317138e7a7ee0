"""Storage: SQLAlchemy 2 async over PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from stovepipe.storage.engine import create_engine, is_sqlite, normalize_url
from stovepipe.storage.errors import (
    AlreadyExists,
    StorageError,
    StorageUnavailable,
    VersionMismatch,
    is_retryable,
)
from stovepipe.storage.store import Store

__all__ = [
    "AlreadyExists",
    "StorageError",
    "StorageUnavailable",
    "Store",
    "VersionMismatch",
    "create_engine",
    "is_retryable",
    "is_sqlite",
    "normalize_url",
]
