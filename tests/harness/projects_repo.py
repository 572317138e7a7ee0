"""The three-project monorepo of the Phase 2 tests: ``web``, ``api`` and ``lib``.

Each project has a status file its target checks (``ok`` passes, anything else
fails). ``api`` depends on ``lib`` by target pattern: its targets are ``api-*``
and ``lib-*``. ``web-test`` only runs for changes under ``web/src/``, while the
project ``web`` owns all of ``web/``: a change to ``web/README`` touches the
project without running its target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    title: str
    files: dict[str, str | None]


WEIGHTS = {"web": 1.0, "api": 2.0, "lib": 1.0}
TOTAL = sum(WEIGHTS.values())


def _check(path: str) -> str:
    return f'test "$(cat {path})" = ok'


TARGETS: list[dict[str, Any]] = [
    {"name": "web-test", "command": _check("web/src/status"), "paths": ["web/src/**"]},
    {"name": "api-test", "command": _check("api/status"), "paths": ["api/**", "lib/**"]},
    {"name": "lib-test", "command": _check("lib/status"), "paths": ["lib/**"]},
]

PROJECTS: list[dict[str, Any]] = [
    {
        "name": "web",
        "paths": ["web/**"],
        "targets": ["web-*"],
        "weight": WEIGHTS["web"],
        "promotion_ref": "verified-web",
    },
    {
        "name": "api",
        "paths": ["api/**"],
        "targets": ["api-*", "lib-*"],
        "weight": WEIGHTS["api"],
        "promotion_ref": "verified-api",
    },
    {"name": "lib", "paths": ["lib/**"], "targets": ["lib-*"], "weight": WEIGHTS["lib"]},
]

ALL_GREEN = Step(
    "three projects, all green",
    {"web/src/status": "ok\n", "web/README": "web\n", "api/status": "ok\n", "lib/status": "ok\n"},
)
BREAK_API = Step("break api", {"api/status": "broken\n"})
TOUCH_API = Step("touch api only, still green", {"api/status": "ok\n", "api/notes": "x\n"})
TOUCH_WEB_README = Step("touch web/README only", {"web/README": "web, again\n"})


def queue_options(**extra: Any) -> dict[str, Any]:
    """``live_stack`` keyword arguments for a Queue with the three projects."""
    return {"targets": TARGETS, "projects": PROJECTS, **extra}
