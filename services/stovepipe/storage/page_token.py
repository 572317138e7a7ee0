"""Opaque page tokens for listing facts newest first.

A token names the last fact of the previous page by its sort key
``(created_at, uri)``; the next page starts strictly after it. Unlike an
offset, that stays correct while new facts arrive between two calls: they sort
before the cursor and never push an already-seen fact onto the next page.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from stovepipe.domain.errors import InvalidInput

_VERSION = 1


@dataclass(frozen=True, slots=True)
class FactCursor:
    created_at: datetime
    uri: str


def encode_page_token(cursor: FactCursor) -> str:
    payload = {"v": _VERSION, "t": cursor.created_at.isoformat(), "u": cursor.uri}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> FactCursor | None:
    """The cursor in ``token``; ``None`` for the first page; ``InvalidInput`` for a forged one."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        if payload["v"] != _VERSION or not isinstance(payload["u"], str):
            raise ValueError(payload)
        created_at = datetime.fromisoformat(payload["t"])
        if created_at.tzinfo is None:
            raise ValueError(payload)
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise InvalidInput("page_token is not one this server issued") from None
    return FactCursor(created_at=created_at, uri=payload["u"])
