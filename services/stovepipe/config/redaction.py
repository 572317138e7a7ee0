"""Masking credentials that can hide inside URL-valued settings.

The configuration holds no secret values of its own (tokens and signing keys
are named by variable or file), but a URL can carry a password, most often
``STOVEPIPE_DATABASE_URL``. Fields typed ``UrlWithCredentials`` keep the real
value for the code that connects, and show a masked one in ``repr``/``str``
and in ``model_dump(context={"redact": True})``.
"""

from __future__ import annotations

from typing import Annotated, Final
from urllib.parse import urlsplit, urlunsplit

from pydantic import PlainSerializer, SerializationInfo

MASK: Final = "***"


class _Redacted:
    """Marker in ``Annotated`` metadata: mask this value wherever it is shown."""


REDACTED: Final = _Redacted()


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


def _serialize(value: str | None, info: SerializationInfo) -> str | None:
    context = info.context
    if value is not None and isinstance(context, dict) and context.get("redact"):
        return redact_url(value)
    return value


UrlWithCredentials = Annotated[str, REDACTED, PlainSerializer(_serialize)]
"""A URL that may embed a credential: masked in ``repr`` and redacted dumps."""

OptionalUrlWithCredentials = Annotated[str | None, REDACTED, PlainSerializer(_serialize)]


def is_redacted(metadata: list[object]) -> bool:
    return any(m is REDACTED for m in metadata)
