"""Process-wide logging: JSON lines for machines, one readable line on a terminal.

Everything goes through the standard library's ``logging`` (ours and our
dependencies' loggers alike) and is rendered by structlog's formatter, so every
line carries the same keys: ``timestamp``, ``level``, ``component``, ``logger``,
``event``, and, while a stage handles a record, ``stage``, ``queue``,
``request_id``, ``request_attempt``/``attempt`` and ``trace_id`` (bound by
:mod:`stovepipe.telemetry.instrument`). The last processor before rendering
masks credentials in every value, tracebacks included, through
:mod:`stovepipe.redaction`: whoever logged it, a secret does not reach the log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog
from opentelemetry import trace

from stovepipe.redaction import redact

LogFormat = Literal["auto", "json", "human"]


def _redact_values(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
        elif not isinstance(value, int | float | bool) and value is not None:
            event[key] = redact(str(value))
    return event


def _trace_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if "trace_id" not in event:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            event["trace_id"] = format(context.trace_id, "032x")
    return event


def _drop_internals(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event.pop("_record", None)
    event.pop("_from_structlog", None)
    return event


def json_wanted(log_format: LogFormat, stream: Any = None) -> bool:
    """JSON unless asked for ``human``, or ``auto`` and writing to a terminal."""
    if log_format == "auto":
        isatty = getattr(stream or sys.stderr, "isatty", None)
        return not (callable(isatty) and isatty())
    return log_format == "json"


def formatter(component: str, log_format: LogFormat = "auto") -> logging.Formatter:
    """The formatter of every handler of a Stovepipe process."""

    def add_component(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("component", component)
        return event

    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_wanted(log_format)
        else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            add_component,
            _trace_id,
        ],
        processors=[
            _drop_internals,
            structlog.processors.format_exc_info,
            _redact_values,
            renderer,
        ],
    )


def configure_logging(component: str, log_format: LogFormat | None = None) -> None:
    """Send every log record of this process to stderr in ``log_format``
    (default: ``STOVEPIPE_LOG_FORMAT``, else ``auto``)."""
    chosen = log_format or os.environ.get("STOVEPIPE_LOG_FORMAT", "auto").lower()
    if chosen not in ("auto", "json", "human"):
        chosen = "auto"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(component, chosen))  # type: ignore[arg-type]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("STOVEPIPE_LOG_LEVEL", "INFO").upper())
    for noisy in ("aiokafka", "faststream", "stovepipe.faststream"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
