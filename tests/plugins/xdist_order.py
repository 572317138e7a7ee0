"""Under pytest-xdist, hand out the longest test modules first.

With ``--dist loadfile`` each module is one unit of work, given to workers in
collection order (``--no-loadscope-reorder``). A long module collected last
(the 600-head scale-out test sits in the middle of ``tests/faults``) would start
when the other workers have run out of work and stretch the run by its whole
length; started first, it overlaps with everything else. Serial runs keep the
plain collection order.
"""

from __future__ import annotations

import os

import pytest

LONGEST_FIRST = (
    "tests/faults/test_scale_out.py",
    "tests/faults/test_soak.py",
    "tests/faults/test_up_survives_kill9.py",
    "tests/console/test_console_browser.py",
    "tests/faults/",
    "tests/e2e/",
    "tests/cli/test_up",
    "tests/hooks/test_hooks_e2e.py",
    "tests/telemetry/",
)
"""Path prefixes (relative to the repository), longest-running first; whatever
matches none keeps its place after them."""


def _rank(item: pytest.Item, root: str) -> int:
    path = os.path.relpath(str(item.path), root)
    return next(
        (rank for rank, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)),
        len(LONGEST_FIRST),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    root = str(config.rootpath)
    items.sort(key=lambda item: _rank(item, root))  # stable: modules keep their own order
