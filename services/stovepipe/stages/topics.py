"""Topic names the stages publish to (the messaging layer owns their bindings)."""

from __future__ import annotations

PROCESS = "stovepipe.process"
BUILD = "stovepipe.build"
BUILDSIGNAL = "stovepipe.buildsignal"
RECORD = "stovepipe.record"
ANALYZE = "stovepipe.analyze"
HOOK = "stovepipe.hook"
