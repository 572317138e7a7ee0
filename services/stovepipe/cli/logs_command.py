"""``stovepipe logs <request> [--target]``: the kept output of a Request's failed targets.

Exit 0 with the logs printed, 2 when the Request has none kept (nothing failed,
or they were pruned), 3 on an API error (an unknown Request is NOT_FOUND).
"""

from __future__ import annotations

from typing import Annotated

import typer

from stovepipe.cli.client_commands import EXIT_NOT_RECORDED
from stovepipe.cli.connection import Target, call, connection_options
from stovepipe.cli.output import stderr as err_console
from stovepipe.v1 import stovepipe_service_pb2 as pb


def register(app: typer.Typer) -> None:
    @app.command()
    @connection_options
    def logs(
        request_id: Annotated[str, typer.Argument(help="request/<queue>/<n>")],
        target_name: Annotated[
            str, typer.Option("--target", help="Only this target (default: every kept log).")
        ] = "",
        *,
        target: Target,
    ) -> None:
        """Print the kept (redacted, size-bounded) output of the Request's failed targets,
        newest attempt first. Exit 2 when none is kept."""
        response = call(
            target,
            lambda stub, md: stub.GetBuildLog(
                pb.GetBuildLogRequest(request_id=request_id, target=target_name), metadata=md
            ),
        )
        if not response.logs:
            which = f" of target {target_name!r}" if target_name else ""
            err_console.print(f"{request_id}: no log{which} kept (nothing failed, or pruned)")
            raise typer.Exit(EXIT_NOT_RECORDED)
        for entry in response.logs:
            cut = ", truncated" if entry.truncated else ""
            typer.echo(
                f"== {entry.target} (attempt {entry.attempt}, build {entry.build_id}{cut}) =="
            )
            typer.echo(entry.content.rstrip("\n"))
