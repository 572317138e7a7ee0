"""The reference BuildRunner: git worktrees, targets in a bubblewrap sandbox, records on disk.

``serve`` starts it inside an asyncio program; ``main`` runs it as a process
(``stovepipe ext local-runner --listen HOST:PORT --source-control HOST:PORT
--work-dir DIR [--hide STATE_DIR] [--no-sandbox]``). See
``doc/rfc/ext-buildrunner.md`` for the model.
"""

from stovepipe.extensions.buildrunner.local.locator import CommitLocator, SourceControlLocator
from stovepipe.extensions.buildrunner.local.runner import LocalBuildRunner, RunnerSettings
from stovepipe.extensions.buildrunner.local.server import LocalRunnerServer, main, serve

__all__ = [
    "CommitLocator",
    "LocalBuildRunner",
    "LocalRunnerServer",
    "RunnerSettings",
    "SourceControlLocator",
    "main",
    "serve",
]
