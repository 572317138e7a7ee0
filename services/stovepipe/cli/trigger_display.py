"""How a Request's trigger is shown by ``status`` (and ``ingest --wait``)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from stovepipe.v1 import types_pb2

TRIGGER_HELP = (
    "What reports the head: manual (default), schedule (a cron job of yours), or a word "
    "of your own; the built-in poller, webhooks and depends_on use poll, schedule, push "
    "and upstream."
)


def show_trigger(console: Console, request: types_pb2.Request) -> None:
    """The trigger, its details (upstream commit, push delivery) and the upstream greens."""
    details = ", ".join(f"{k}={v}" for k, v in sorted(request.trigger_details.items()))
    line = request.trigger or "unspecified"
    console.print(f"  trigger   {escape(line)}" + (f" ({escape(details)})" if details else ""))
    for green in request.upstream_greens:
        console.print(f"  upstream  {escape(green.queue)} green at {escape(green.uri)}")
