"""The reference SourceControl server over git (``stovepipe ext git``).

``serve`` starts it inside a running event loop; ``main`` runs it as a
process. ``GitSourceControl`` is the implementation behind the servicer, for
code that wants git answers without gRPC in between.
"""

from stovepipe.extensions.sourcecontrol.git.backend import GitSettings, GitSourceControl
from stovepipe.extensions.sourcecontrol.git.server import GitServer, main, serve

__all__ = ["GitServer", "GitSettings", "GitSourceControl", "main", "serve"]
