"""Redaction of credentials from any text that leaves the process (logs, headers, events,
configuration dumps): ``redact`` for free text, ``redact_line`` for text cut to a length,
``redact_url`` for a setting known to be a URL.

Every pattern runs in time linear in the text: a quantifier never overlaps the
one before it, and a URL's scheme is only tried where a run of scheme
characters starts, so no character is rescanned from every position before it.
Text that is going to be cut is cut first (``redact_line``), so its cost does
not grow with the text.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit, urlunsplit

MASK: Final = "***"

_SCHEME = r"(?<![a-z0-9+.-])([a-z0-9+.-]+://)"
_URL_USERINFO = re.compile(rf"(?ai){_SCHEME}[^/@\s]+@")
_URL_USERINFO_AT_CUT = re.compile(rf"(?ai){_SCHEME}[^/@\s]+\Z")
"""A URL cut before the ``@`` that would show its user information for what it is."""
_KEYED = re.compile(
    r"(?ai)((?:token|secret|password|passwd|api[_-]?key|authorization)[\"']?\s*[=:]\s*"
    r"(?:bearer\s+)?)\S+"
)
_BEARER = re.compile(r"(?ai)\b(bearer\s+)\S+")
_WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")
_TRIGGERS = re.compile(r"token|secret|passw|api[_-]?key|authorization|bearer")
"""Searched in lower case, where the engine can skip ahead on the first character (it
cannot with ``(?i)``), so a text with nothing to mask is scanned once, quickly. The
patterns match ASCII case-insensitively (``(?a)``), exactly what lower-casing finds."""


def redact(text: str) -> str:
    """Mask URL credentials, ``key=value`` secrets, bearer tokens and ``whsec_`` signing
    keys; leave everything else as is."""
    return _redact(text, cut=False)


def redact_line(text: str, limit: int) -> str:
    """``text`` redacted, on one line, in at most ``limit`` characters (``...`` marks a cut).

    Only a bounded head of ``text`` is read. The head is redacted as if a URL at its very
    end had been cut inside its user information, so the cut never leaves part of a
    credential visible; cutting the redacted head to ``limit`` cannot uncover one either.
    """
    head = text[: 2 * limit + 64]
    cut = len(head) < len(text)
    line = _redact(" ".join(head.split()), cut=cut)
    if not cut and len(line) <= limit:
        return line
    return line[: max(limit - 3, 0)] + "..."


def _redact(text: str, *, cut: bool) -> str:
    if "://" in text:
        text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
        if cut:
            text = _URL_USERINFO_AT_CUT.sub(rf"\1{MASK}", text)
    if _TRIGGERS.search(text.lower()):
        text = _KEYED.sub(rf"\1{MASK}", text)
        text = _BEARER.sub(rf"\1{MASK}", text)
    return _WEBHOOK_SECRET.sub(f"whsec_{MASK}", text)


def redact_url(url: str) -> str:
    """``url`` with its password (or a user-only credential) and query values masked.

    ``postgresql://app:pw@db/x`` → ``postgresql://app:***@db/x``;
    ``https://TOKEN@host/repo`` → ``https://***@host/repo``. Strings that are not
    URLs with a network location are returned unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
        netloc = f"{user}:{MASK}@{host}" if user else f"{MASK}@{host}"
    query = "&".join(
        f"{pair.split('=', 1)[0]}={MASK}" if "=" in pair else pair
        for pair in parts.query.split("&")
        if pair
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
