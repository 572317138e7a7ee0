"""What storage keeps about a Request's past and how a Queue's Requests are paged.

``RequestTransition`` is one durable state change (``request_transitions``),
written in the same transaction as the change itself, so ``stovepipe status``
can show when a head was accepted, admitted, superseded or recorded even after
every process restarted. ``RequestCursor`` pages a Queue's Requests newest first
by their ingest number, which only grows: new Requests land before the cursor
and never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from stovepipe.domain import RequestState
from stovepipe.domain.errors import InvalidInput

_VERSION = 1
MAX_REQUEST_TOKEN_LENGTH = 128


@dataclass(frozen=True, slots=True)
class RequestTransition:
    state: RequestState
    attempt: int
    reason: str
    at: datetime
    version: int


@dataclass(frozen=True, slots=True)
class RequestCursor:
    """The next page holds the Requests numbered strictly below ``before``."""

    before: int


def encode_request_token(cursor: RequestCursor) -> str:
    raw = json.dumps({"v": _VERSION, "r": cursor.before}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_request_token(token: str) -> RequestCursor | None:
    """The cursor in ``token``; ``None`` for the first page; ``InvalidInput`` for a forged one."""
    if not token:
        return None
    if len(token) > MAX_REQUEST_TOKEN_LENGTH:
        raise InvalidInput("page_token is not one this server issued")
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        before = payload["r"]
        if payload["v"] != _VERSION or not isinstance(before, int) or isinstance(before, bool):
            raise ValueError(payload)
        if not 1 <= before <= 2**31 - 1:
            raise ValueError(payload)
    except (ValueError, TypeError, KeyError, binascii.Error, RecursionError):
        raise InvalidInput("page_token is not one this server issued") from None
    return RequestCursor(before=before)
