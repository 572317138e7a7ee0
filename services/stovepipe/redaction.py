"""Redaction of credentials from any text that leaves the process (logs, headers, events)."""

from __future__ import annotations

import re

_SECRETISH = re.compile(
    r"(?i)((?:token|secret|password|passwd|api[_-]?key|authorization)\s*[=:]\s*(?:bearer\s+)?)\S+"
)
_URL_CREDENTIALS = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """Mask URL credentials and ``key=value`` secrets; leave everything else as is."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    return _SECRETISH.sub(r"\1***", text)
