"""Logical names of the topics the stages publish to.

The topic registry (``stovepipe.messaging.topics``) is the one place a topic is
spelled; stages publish by these names so they need no messaging types.
"""

from __future__ import annotations

from stovepipe.messaging import topics as _registry

PROCESS = _registry.PROCESS.name
BUILD = _registry.BUILD.name
BUILDSIGNAL = _registry.BUILDSIGNAL.name
RECORD = _registry.RECORD.name
ANALYZE = _registry.ANALYZE.name
HOOK = _registry.HOOK.name
