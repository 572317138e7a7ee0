"""The reference SourceControl server over git (``stovepipe ext git``).

``serve`` starts it inside a running event loop; ``main`` runs it as a
process. ``GitSourceControl`` is the implementation behind the servicer, for
code that wants git answers without gRPC in between. Both answer only for the
repositories in a ``ServedRepositories`` allow-list.
"""

from stovepipe.extensions.sourcecontrol.git.backend import GitSettings, GitSourceControl
from stovepipe.extensions.sourcecontrol.git.served import (
    Promotion,
    ServedRepositories,
    ServedRepository,
    load_served,
    served_from_config,
)
from stovepipe.extensions.sourcecontrol.git.server import GitServer, main, serve

__all__ = [
    "GitServer",
    "GitSettings",
    "GitSourceControl",
    "Promotion",
    "ServedRepositories",
    "ServedRepository",
    "load_served",
    "main",
    "serve",
    "served_from_config",
]
