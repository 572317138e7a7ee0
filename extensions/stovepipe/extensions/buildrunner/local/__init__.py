"""The reference BuildRunner: git worktrees and local processes.

``serve`` starts it inside an asyncio program; ``main`` runs it as a process
(``stovepipe ext local-runner --listen HOST:PORT --source-control HOST:PORT
--work-dir DIR``). See ``doc/rfc/ext-buildrunner.md`` for the model.
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
