"""The environment a target runs with: a short, fixed list, never the runner's own.

The runner's environment may hold credentials (cloud keys, registry tokens,
the SourceControl address's secrets); a target only gets:

- ``PATH``: the runner's ``PATH`` at start-up (or ``RunnerSettings.path``);
- ``HOME``: a fresh, empty directory of the build, removed with its checkout;
- ``LANG``: ``C.UTF-8``;
- ``STOVEPIPE_QUEUE``, ``STOVEPIPE_HEAD_URI``, ``STOVEPIPE_BASE_URI`` (empty for a
  full build) and ``STOVEPIPE_BUILD_ID``.
"""

from __future__ import annotations

from pathlib import Path

from stovepipe.extensions.buildrunner.model import TriggerSpec

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def target_environment(
    spec: TriggerSpec, *, build_id: str, home: Path, path: str | None
) -> dict[str, str]:
    return {
        "PATH": path or DEFAULT_PATH,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "STOVEPIPE_QUEUE": spec.source.queue,
        "STOVEPIPE_HEAD_URI": spec.head_uri,
        "STOVEPIPE_BASE_URI": spec.base_uri,
        "STOVEPIPE_BUILD_ID": build_id,
    }
