"""How commands print: data on stdout exactly as scripts need it, people's notes on stderr.

A deploy job runs ``stovepipe gate q "$(stovepipe last-green q)"``, so what a
command prints on stdout is never wrapped, styled or padded when stdout is not
a terminal: one value per line, tables as tab-separated columns. Progress,
hints and warnings go to stderr, where they never end up inside a ``$(...)``.
``--json`` prints one JSON object instead (proto field names, as the API has
them), whatever stdout is.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table

stderr = Console(stderr=True, soft_wrap=True, highlight=False)
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def is_terminal() -> bool:
    return sys.stdout.isatty()


def line(text: str) -> None:
    """One line of data on stdout, never wrapped or marked up."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """A line for the person at the terminal, on stderr (rich markup allowed)."""
    stderr.print(text)


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def emit_json(value: Message | dict[str, Any]) -> None:
    data = as_dict(value) if isinstance(value, Message) else value
    line(json.dumps(data, sort_keys=True))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A rich table on a terminal (cells fold, never cut); tab-separated lines otherwise."""
    if not is_terminal():
        for row in rows:
            line("\t".join(row))
        return
    view = Table(*headers, box=None, pad_edge=False)
    for column in view.columns:
        column.overflow = "fold"
    for row in rows:
        view.add_row(*row)
    Console(soft_wrap=False, highlight=False).print(view)


def when(ts: Timestamp) -> str:
    """A timestamp as UTC ISO seconds; empty for an unset one."""
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def age(ts: Timestamp, now: datetime | None = None) -> str:
    if not ts.seconds and not ts.nanos:
        return ""
    return span((now or datetime.now(UTC)).timestamp() - ts.ToDatetime(UTC).timestamp())


def span(seconds: float) -> str:
    """``seconds`` as a short human duration: 45s, 12m, 3h05m, 2d04h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def parse_duration(value: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``1h30m`` or ``2h``; ``ValueError`` otherwise."""
    text = value.strip().lower()
    match = _DURATION.fullmatch(text) if text else None
    if match is None or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration (examples: 90, 90s, 30m, 1h30m)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"{value!r}: a duration must be positive")
    return total
