"""Operator commands for hooks and events: ``hooks list|show|redeliver`` and ``watch``.

They talk to a running API like the other client commands (same connection
options, same exit codes: 3 when the API refused or could not be reached, 4
for unusable options). ``hooks redeliver`` needs the admin role; the others
the read role.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated, Any

import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console

from stovepipe.cli.connection import EXIT_ERROR, Metadata, Target, call, connection_options
from stovepipe.cli.output import stderr as err_console
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import topics_pb2

console = Console(highlight=False, soft_wrap=True)
hooks_app = typer.Typer(help="Hook deliveries: list, show, redeliver.", no_args_is_help=True)


def _when(delivery: pb.HookDelivery, field: str) -> str:
    if not delivery.HasField(field):  # type: ignore[arg-type]
        return "-"
    return str(getattr(delivery, field).ToJsonString())


def _show_delivery(d: pb.HookDelivery) -> None:
    console.print(f"[bold]{d.id}[/bold]  {d.state}", markup=True, highlight=False)
    console.print(f"  event      {d.event_type} {d.event_id}", markup=False, highlight=False)
    console.print(f"  attempts   {d.attempts}", markup=False, highlight=False)
    console.print(f"  created    {_when(d, 'created_at')}", markup=False, highlight=False)
    console.print(f"  delivered  {_when(d, 'delivered_at')}", markup=False, highlight=False)
    if d.HasField("next_attempt_at"):
        console.print(f"  next try   {_when(d, 'next_attempt_at')}", markup=False)
    if d.last_error:
        console.print(f"  last error {d.last_error}", markup=False, highlight=False)


def _event_line(event: topics_pb2.HookEvent) -> str:
    data = event.data
    when = event.time.ToJsonString() if event.HasField("time") else "-"
    scope = f" project={data.project}" if data.project else ""
    verdict = "green" if data.green else f"not green (degree {data.degree:g})"
    return f"{when}  {event.type}  {data.queue}{scope}  {data.uri}  {verdict}"


def register(app: typer.Typer) -> None:
    app.add_typer(hooks_app, name="hooks")

    @hooks_app.command("list")
    @connection_options
    def list_deliveries(
        queue: Annotated[str, typer.Option(help="Only this Queue's deliveries.")] = "",
        state: Annotated[
            str, typer.Option(help="Only deliveries in this state: pending, delivered, failed.")
        ] = "",
        limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1)] = 50,
        *,
        target: Target,
    ) -> None:
        """List hook deliveries, newest first: id, state, attempts, event type, last error."""

        async def fetch(stub: Any, md: Metadata) -> list[pb.HookDelivery]:
            found: list[pb.HookDelivery] = []
            token = ""
            while len(found) < limit:
                response = await stub.ListHookDeliveries(
                    pb.ListHookDeliveriesRequest(
                        queue=queue,
                        state=state,
                        page_size=min(500, limit - len(found)),
                        page_token=token,
                    ),
                    metadata=md,
                )
                found.extend(response.deliveries)
                token = response.next_page_token
                if not token:
                    break
            return found

        deliveries = call(target, fetch)
        if not deliveries:
            err_console.print("no hook deliveries")
            return
        for d in deliveries:
            error = f"  {d.last_error}" if d.last_error else ""
            console.print(
                f"{d.id}  {d.state}  attempts={d.attempts}  {d.event_type}{error}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    @hooks_app.command("show")
    @connection_options
    def show(
        delivery: Annotated[str, typer.Argument(help="Delivery id: <queue>/<event id>/<hook>.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
        *,
        target: Target,
    ) -> None:
        """Show one delivery and the event it carries."""
        response = call(
            target,
            lambda stub, md: stub.GetHookDelivery(
                pb.GetHookDeliveryRequest(id=delivery), metadata=md
            ),
        )
        d = response.delivery
        if as_json:
            typer.echo(json.dumps(MessageToDict(d), indent=2, sort_keys=True))
            return
        _show_delivery(d)
        if d.HasField("event"):
            console.print(f"  {_event_line(d.event)}", markup=False, highlight=False)

    @hooks_app.command("redeliver")
    @connection_options
    def redeliver(
        delivery: Annotated[
            str, typer.Argument(help="Delivery id: <queue>/<event id>/<hook>.", show_default=False)
        ] = "",
        failed: Annotated[
            bool, typer.Option("--failed", help="Every failed delivery (of --queue if given).")
        ] = False,
        queue: Annotated[str, typer.Option(help="With --failed: only this Queue's.")] = "",
        *,
        target: Target,
    ) -> None:
        """Admin: put a delivery (or every failed one) back in line for a fresh round of
        attempts, with the same event id. Re-enables a subscription disabled by 410 Gone."""
        if bool(delivery) == failed:
            err_console.print("[red]error[/red] give a delivery id or --failed (not both)")
            raise typer.Exit(4)
        response = call(
            target,
            lambda stub, md: stub.RedeliverHook(
                pb.RedeliverHookRequest(id=delivery, all_failed=failed, queue=queue), metadata=md
            ),
        )
        for d in response.deliveries:
            console.print(f"{d.id}  {d.state}", markup=False, highlight=False)
        err_console.print(f"{len(response.deliveries)} delivery(ies) back in line")

    @app.command()
    @connection_options
    def watch(
        queues: Annotated[
            list[str] | None, typer.Argument(help="Queues to watch (default: every Queue).")
        ] = None,
        from_beginning: Annotated[
            bool,
            typer.Option("--from-beginning", help="Start with every event still on the topic."),
        ] = False,
        cursor: Annotated[
            str, typer.Option(help="Resume after this cursor (printed when a watch ends).")
        ] = "",
        count: Annotated[
            int, typer.Option(help="Stop after this many events (0: run until Ctrl-C).", min=0)
        ] = 0,
        as_json: Annotated[
            bool, typer.Option("--json", help="One JSON object per event, with its cursor.")
        ] = False,
        *,
        target: Target,
    ) -> None:
        """Stream verdict events to the terminal as they are recorded (WatchEvents).

        "watching" on stderr means the stream is ready: every verdict recorded from
        then on is shown. When the watch ends, the cursor to resume from is printed
        on stderr."""
        if from_beginning and cursor:
            err_console.print("[red]error[/red] give --from-beginning or --cursor, not both")
            raise typer.Exit(4)
        last = [cursor]

        async def stream(stub: Any, md: Metadata) -> int:
            request = pb.WatchEventsRequest(
                queues=queues or [], cursor=cursor, from_beginning=from_beginning
            )
            call = stub.WatchEvents(request, metadata=md)
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGINT, call.cancel)
            loop.add_signal_handler(signal.SIGTERM, call.cancel)
            seen = 0
            try:
                async for response in call:
                    last[0] = response.cursor or last[0]
                    if response.ready:
                        err_console.print("watching (ready)", highlight=False)
                        continue
                    if as_json:
                        body = MessageToDict(response.event, preserving_proto_field_name=True)
                        typer.echo(json.dumps({"cursor": response.cursor, "event": body}))
                    else:
                        typer.echo(_event_line(response.event))
                    seen += 1
                    if count and seen >= count:
                        call.cancel()
                        break
            except asyncio.CancelledError:
                pass
            return 0

        try:
            code = call(target, stream)
        finally:
            if last[0]:
                err_console.print(f"resume with --cursor '{last[0]}'", highlight=False)
        if code:
            raise typer.Exit(EXIT_ERROR)
