"""Fixtures for the hooks tests (the machinery lives in ``harness.live``)."""

from __future__ import annotations

from typing import Any

import pytest

from plugins.broker import group_timing, session_broker_is_tansu


@pytest.fixture
def live_kafka() -> dict[str, Any]:
    """Group timing for the in-process stages, as in the end-to-end suite."""
    return group_timing(embedded=session_broker_is_tansu(), tansu_session_ms=4_000)
