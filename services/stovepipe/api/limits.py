"""What every request field may hold, checked at the API edge before any other work.

Each limit is a size first and a character rule second, so an oversized value is
refused after one ``len`` and never scanned, logged or echoed. Messages name the
field and the rule, never the value (only a code point, for a forbidden character).
The limits are the public contract and are listed in ``doc/rfc/api.md``.

``check_request`` raises ``InvalidInput`` (the API answers INVALID_ARGUMENT);
whether a Queue or project exists is the servicer's business, not this module's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from google.protobuf.message import Message

from stovepipe.domain import MAX_QUEUE_NAME_LENGTH, InvalidInput, RequestId, validate_queue_name
from stovepipe.storage.page_token import FactCursor, decode_page_token
from stovepipe.storage.request_history import MAX_REQUEST_TOKEN_LENGTH, decode_request_token
from stovepipe.v1 import stovepipe_service_pb2 as pb

MAX_URI_LENGTH = 1024
MAX_REASON_LENGTH = 1024
MAX_TRIGGER_LENGTH = 64
MAX_PROJECT_LENGTH = 256
MAX_TARGET_LENGTH = 256
MAX_REQUEST_ID_LENGTH = 256
# A page token carries a cursor over a URI of up to MAX_URI_LENGTH characters, each of
# which may take twelve bytes of escaped JSON, then base64: 20 KiB covers any we issue.
MAX_PAGE_TOKEN_LENGTH = 20 * 1024
MAX_FILTER_ENTRIES = 64
MAX_CURSOR_LENGTH = 4096
MAX_DELIVERY_ID_LENGTH = 1024
MAX_REQUEST_NUMBER = 2**31 - 1
"""Request numbers are stored as 32-bit integers (PostgreSQL ``integer``)."""

_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_PAGE_TOKEN = re.compile(r"[A-Za-z0-9_-]*")


def check_text(field: str, value: str, limit: int, *, required: bool = False) -> str:
    """``value`` when it has at most ``limit`` characters and only printable ones.

    Refused: control characters (NUL, newline, escape, DEL, C1), format characters
    (bidirectional overrides, zero-width marks) and line or paragraph separators;
    they corrupt logs, terminals and PostgreSQL text (which cannot hold NUL).
    """
    if len(value) > limit:
        raise InvalidInput(f"{field} is {len(value)} characters long; the limit is {limit}")
    if required and not value:
        raise InvalidInput(f"{field} is empty")
    if value.isprintable():
        return value
    for position, char in enumerate(value):
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            raise InvalidInput(
                f"{field} contains U+{ord(char):04X} at position {position}; control and "
                "format characters are not allowed"
            )
    return value


def check_queue(field: str, value: str) -> str:
    """A Queue name by the naming rules (``validate_queue_name``); empty is refused."""
    if len(value) > MAX_QUEUE_NAME_LENGTH:
        raise InvalidInput(
            f"{field} is {len(value)} characters long; the limit is {MAX_QUEUE_NAME_LENGTH}"
        )
    return validate_queue_name(value)


def check_request_id(field: str, value: str) -> RequestId:
    """``request/<queue>/<n>`` with ``1 <= n <= 2**31 - 1``."""
    check_text(field, value, MAX_REQUEST_ID_LENGTH, required=True)
    rid = RequestId.parse(value)
    if rid.n > MAX_REQUEST_NUMBER:
        raise InvalidInput(
            f"{field}: request number {rid.n} is out of range; the largest is {MAX_REQUEST_NUMBER}"
        )
    return rid


def check_page_token(field: str, value: str) -> FactCursor | None:
    """A token this server issued: bounded, base64url, and a cursor with a valid URI."""
    if len(value) > MAX_PAGE_TOKEN_LENGTH:
        raise InvalidInput(
            f"{field} is {len(value)} characters long; the limit is {MAX_PAGE_TOKEN_LENGTH}"
        )
    if not _PAGE_TOKEN.fullmatch(value):
        raise InvalidInput(f"{field} is not one this server issued")
    try:
        cursor = decode_page_token(value)
    except RecursionError:
        raise InvalidInput(f"{field} is not one this server issued") from None
    if cursor is not None:
        try:
            check_text(field, cursor.uri, MAX_URI_LENGTH)
        except InvalidInput:
            raise InvalidInput(f"{field} is not one this server issued") from None
    return cursor


def _entries(field: str, values: Iterable[str], check: Callable[[str, str], object]) -> None:
    listed = list(values)
    if len(listed) > MAX_FILTER_ENTRIES:
        raise InvalidInput(f"{field} has {len(listed)} entries; the limit is {MAX_FILTER_ENTRIES}")
    for index, value in enumerate(listed):
        check(f"{field}[{index}]", value)


def _project(field: str, value: str) -> str:
    return check_text(field, value, MAX_PROJECT_LENGTH)


def _uri(field: str, value: str) -> str:
    return check_text(field, value, MAX_URI_LENGTH)


def _ingest(r: pb.IngestRequest) -> None:
    check_queue("queue", r.queue)
    check_text("trigger", r.trigger, MAX_TRIGGER_LENGTH)


def _get_request(r: pb.GetRequestRequest) -> None:
    check_request_id("request_id", r.request_id)


def _get_last_green(r: pb.GetLastGreenRequest) -> None:
    check_queue("queue", r.queue)
    _project("project", r.project)


def _get_greenness(r: pb.GetGreennessRequest) -> None:
    check_queue("queue", r.queue)
    _uri("uri", r.uri)
    _project("project", r.project)


def _get_project_greenness(r: pb.GetProjectGreennessRequest) -> None:
    check_queue("queue", r.queue)
    _uri("uri", r.uri)


def _list_facts(r: pb.ListFactsRequest) -> None:
    check_queue("queue", r.queue)
    _project("project", r.project)
    if r.page_size < 0:
        raise InvalidInput("page_size must not be negative")
    check_page_token("page_token", r.page_token)


def _wait_for_greenness(r: pb.WaitForGreennessRequest) -> None:
    check_queue("queue", r.queue)
    _uri("uri", r.uri)
    _project("project", r.project)


def _list_requests(r: pb.ListRequestsRequest) -> None:
    check_queue("queue", r.queue)
    _project("project", r.project)
    if r.page_size < 0:
        raise InvalidInput("page_size must not be negative")
    if len(r.page_token) > MAX_REQUEST_TOKEN_LENGTH or not _PAGE_TOKEN.fullmatch(r.page_token):
        raise InvalidInput("page_token is not one this server issued")
    decode_request_token(r.page_token)


def _watch_events(r: pb.WatchEventsRequest) -> None:
    _entries("queues", r.queues, check_queue)
    _entries("projects", r.projects, _project)
    check_text("cursor", r.cursor, MAX_CURSOR_LENGTH)


def _optional_queue(field: str, value: str) -> None:
    if value:
        check_queue(field, value)


def _list_hook_deliveries(r: pb.ListHookDeliveriesRequest) -> None:
    _optional_queue("queue", r.queue)
    check_text("state", r.state, 20)
    if r.page_size < 0:
        raise InvalidInput("page_size must not be negative")
    check_text("page_token", r.page_token, 20)


def _delivery_id(field: str, value: str) -> None:
    check_text(field, value, MAX_DELIVERY_ID_LENGTH)


def _redeliver_hook(r: pb.RedeliverHookRequest) -> None:
    _delivery_id("id", r.id)
    _optional_queue("queue", r.queue)


def _revalidate(r: pb.RevalidateRequest) -> None:
    check_queue("queue", r.queue)
    _uri("uri", r.uri)
    check_text("reason", r.reason, MAX_REASON_LENGTH)


def _get_build_log(r: pb.GetBuildLogRequest) -> None:
    check_request_id("request_id", r.request_id)
    check_text("target", r.target, MAX_TARGET_LENGTH)


_CHECKS: Mapping[type[Message], Callable[[Any], None]] = {
    pb.PingRequest: lambda _r: None,
    pb.IngestRequest: _ingest,
    pb.GetRequestRequest: _get_request,
    pb.GetLastGreenRequest: _get_last_green,
    pb.GetGreennessRequest: _get_greenness,
    pb.GetProjectGreennessRequest: _get_project_greenness,
    pb.ListFactsRequest: _list_facts,
    pb.WatchEventsRequest: _watch_events,
    pb.RevalidateRequest: _revalidate,
    pb.ListHookDeliveriesRequest: _list_hook_deliveries,
    pb.GetHookDeliveryRequest: lambda r: _delivery_id("id", r.id),
    pb.RedeliverHookRequest: _redeliver_hook,
    pb.WaitForGreennessRequest: _wait_for_greenness,
    pb.ListRequestsRequest: _list_requests,
    pb.ListQueuesRequest: lambda _r: None,
    pb.GetBuildLogRequest: _get_build_log,
}


def check_request(request: object) -> None:
    """Raise ``InvalidInput`` unless every field of a StovepipeService request is in bounds.

    Messages of other services (health, reflection) pass unchecked.
    """
    check = _CHECKS.get(type(request))  # type: ignore[arg-type]
    if check is not None:
        check(request)
