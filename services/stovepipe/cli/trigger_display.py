"""How a Request's trigger is shown by ``status`` (and ``ingest --wait``)."""

from __future__ import annotations

from stovepipe.cli.output import line
from stovepipe.v1 import types_pb2

TRIGGER_HELP = (
    "What reports the head: manual (default), schedule (a cron job of yours), or a word "
    "of your own; the built-in poller, webhooks and depends_on use poll, schedule, push "
    "and upstream."
)


def show_trigger(request: types_pb2.Request) -> None:
    """The trigger, its details (upstream commit, push delivery) and the upstream greens,
    as plain lines: ``status`` output is read by scripts too."""
    details = ", ".join(f"{k}={v}" for k, v in sorted(request.trigger_details.items()))
    trigger = request.trigger or "unspecified"
    line(f"  trigger   {trigger}" + (f" ({details})" if details else ""))
    for green in request.upstream_greens:
        line(f"  upstream  {green.queue} green at {green.uri}")
