"""Fixtures for the end-to-end suite (the machinery lives in ``harness.live``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from harness.live import Live, live_stack
from plugins.broker import group_timing, session_broker_is_tansu


@pytest.fixture
def live_kafka() -> dict[str, Any]:
    """Group timing for the in-process stages: a consumer joins in about two seconds on
    Tansu, with room for a busy event loop to miss a heartbeat or two."""
    return group_timing(embedded=session_broker_is_tansu(), tansu_session_ms=4_000)


@pytest.fixture
async def live(
    tmp_path: Path, kafka_bootstrap: str, migrated_pg_url: str, live_kafka: dict[str, Any]
) -> AsyncIterator[Live]:
    async with live_stack(tmp_path, kafka_bootstrap, migrated_pg_url, kafka=live_kafka) as stack:
        yield stack
