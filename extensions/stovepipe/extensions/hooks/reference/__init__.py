"""The reference HooksService server (``stovepipe ext hooks``): webhook, kafka and log targets.

``serve`` starts it inside a running event loop; ``main`` runs it as a process.
It delivers only to the subscriptions of the Queues in its ``--config``.
"""

from stovepipe.extensions.hooks.reference.server import HooksServer, main, serve

__all__ = ["HooksServer", "main", "serve"]
