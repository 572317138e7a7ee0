"""Fixtures for the end-to-end suite (the machinery lives in e2e_helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stovepipe.testing.live import Live, live_stack


@pytest.fixture
async def live(tmp_path: Path, kafka_bootstrap: str, pg_database_url: str) -> AsyncIterator[Live]:
    async with live_stack(tmp_path, kafka_bootstrap, pg_database_url) as stack:
        yield stack
