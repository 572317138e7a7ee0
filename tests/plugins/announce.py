"""Print a line to the terminal even while pytest captures output."""

from __future__ import annotations

import pytest


def announce(config: pytest.Config, text: str) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[stovepipe tests] {text}")
    else:
        reporter.write_line(f"[stovepipe tests] {text}")
