"""Commands that talk to a running API: ingest, status, last-green, gate, revalidate,
queues, history.

Exit codes (``EXIT_HELP`` is shown by ``--help``): 0 green (or, for commands that
are not gates, done), 1 recorded not green, 2 not recorded (no verdict yet, still
in flight, superseded by a newer head, or the wait timed out), 3 the API could
not answer (unreachable, refused, unavailable), 4 invalid input or usage (a
malformed or ambiguous commit, an unknown Queue, a missing argument, an
unreadable TLS file).

Every command takes the same connection options (:mod:`stovepipe.cli.connection`):
``--api``, ``--token-env`` and, for a server with TLS, ``--ca-file`` (the CA that
signed the server's certificate; ``--tls`` alone trusts the system's CAs) plus
``--cert`` and ``--key`` when the server requires client certificates.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import grpc
import typer

from stovepipe.cli import output
from stovepipe.cli.connection import (
    EXIT_ERROR,
    EXIT_USAGE,
    Metadata,
    Target,
    call,
    connection_options,
    usage_error,
)
from stovepipe.cli.output import line, note
from stovepipe.cli.project_table import project_rows
from stovepipe.cli.trigger_display import TRIGGER_HELP, show_trigger
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import types_pb2

__all__ = ["EXIT_ERROR", "EXIT_USAGE", "register"]

EXIT_GREEN = 0
EXIT_NOT_GREEN = 1
EXIT_NOT_RECORDED = 2

EXIT_HELP = (
    "Exit codes: 0 green; 1 recorded not green; 2 not recorded (no verdict yet, "
    "superseded, or timed out); 3 the API could not answer; 4 invalid input or usage."
)


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object (the API's fields) on stdout.")
]
ProjectOption = Annotated[
    str,
    typer.Option(
        help="One of the Queue's configured projects (default: the whole repository); "
        "another name is refused, naming the configured ones."
    ),
]
CommitArgument = Annotated[
    str,
    typer.Argument(
        help="The commit: its URI (as printed by ingest, status or last-green) or its SHA "
        "(full, or a unique prefix of at least 7 hex digits).",
        show_default=False,
    ),
]


def _duration(value: str) -> float:
    try:
        return output.parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def timeout_option(default: str, what: str) -> Any:
    return typer.Option(
        parser=_duration,
        metavar="DURATION",
        help=f"How long to wait {what}: 90, 90s, 30m, 1h30m.",
        show_default=True,
    )


_TERMINAL = {
    types_pb2.REQUEST_STATE_SUPERSEDED,
    types_pb2.REQUEST_STATE_SUCCEEDED,
    types_pb2.REQUEST_STATE_FAILED,
    types_pb2.REQUEST_STATE_CANCELLED,
}


def _state_name(state: int) -> str:
    return types_pb2.RequestState.Name(state).removeprefix("REQUEST_STATE_").lower()  # type: ignore[arg-type]


def _origin_name(origin: int) -> str:
    return types_pb2.FactOrigin.Name(origin).removeprefix("FACT_ORIGIN_").lower()  # type: ignore[arg-type]


def register(app: typer.Typer) -> None:
    @app.command(epilog=EXIT_HELP)
    @connection_options
    def ingest(
        queue: Annotated[str, typer.Argument(help="Queue name, e.g. monorepo/main.")],
        trigger: Annotated[str, typer.Option(help=TRIGGER_HELP)] = "manual",
        wait: Annotated[
            bool, typer.Option("--wait", help="Follow the Request, showing each step, to its end.")
        ] = False,
        timeout: Annotated[float, timeout_option("10m", "with --wait")] = "10m",  # type: ignore[assignment]
        json_out: JsonOption = False,
        *,
        target: Target,
    ) -> None:
        """Report that QUEUE moved: resolve its head and start validating it.

        Prints the Request id and the head's commit URI. With --wait, follows the
        Request (an ingest-role token may) and exits like a gate."""
        response = call(
            target,
            lambda stub, md: stub.Ingest(
                pb.IngestRequest(queue=queue, trigger=trigger), metadata=md
            ),
        )
        if not json_out:
            known = "\t(already known)" if response.duplicate else ""
            line(f"{response.request_id}\t{response.uri}{known}")
        if not wait:
            if json_out:
                output.emit_json(response)
            return
        raise typer.Exit(_follow(target, response.request_id, timeout, json_out))

    @app.command(epilog=EXIT_HELP)
    @connection_options
    def status(
        request: Annotated[
            str,
            typer.Argument(
                help="A Request id (request/<queue>/<n>), or a Queue name followed by COMMIT.",
                show_default=False,
            ),
        ],
        commit: Annotated[
            str | None,
            typer.Argument(
                help="With a Queue name: the commit (URI or SHA) whose newest Request to show.",
                show_default=False,
            ),
        ] = None,
        wait: Annotated[
            bool, typer.Option("--wait", help="Follow the Request to its end, exit like a gate.")
        ] = False,
        timeout: Annotated[float, timeout_option("10m", "with --wait")] = "10m",  # type: ignore[assignment]
        json_out: JsonOption = False,
        project: Annotated[
            str, typer.Option(help="Show only this project's verdict (default: every scope).")
        ] = "",
        *,
        target: Target,
    ) -> None:
        """Show one Request: state, strategy, build, reason and every state change.

        Each change is listed with its time; they are stored, so they survive restarts."""
        request_id = request
        if commit is not None:
            found = call(
                target,
                lambda stub, md: stub.GetGreenness(
                    pb.GetGreennessRequest(queue=request, uri=commit), metadata=md
                ),
            )
            if not found.HasField("request"):
                note(f"NOT RECORDED: {request} has not ingested {commit}")
                raise typer.Exit(EXIT_NOT_RECORDED)
            request_id = found.request.id
        elif not request.startswith("request/"):
            usage_error(
                f"{request!r} is not a Request id (request/<queue>/<n>); "
                "to find a commit's Request, give the Queue and the commit: status QUEUE COMMIT"
            )
        if wait:
            raise typer.Exit(_follow(target, request_id, timeout, json_out))
        shown = call(
            target,
            lambda stub, md: stub.GetRequest(
                pb.GetRequestRequest(request_id=request_id), metadata=md
            ),
        ).request
        if json_out:
            output.emit_json(shown)
        else:
            _show_request(shown)
            _show_projects(target, shown, project)

    @app.command("last-green", epilog=EXIT_HELP)
    @connection_options
    def last_green(
        queue: Annotated[str, typer.Argument(help="Queue name.")],
        on_branch: Annotated[
            bool,
            typer.Option(
                "--on-branch",
                help="The newest green commit still reachable from the branch head (after a "
                "force-push the bookmark may be off the branch). Use this to deploy.",
            ),
        ] = False,
        project: ProjectOption = "",
        json_out: JsonOption = False,
        *,
        target: Target,
    ) -> None:
        """Print the newest green commit URI of QUEUE, alone on one line (exit 2: none).

        A warning on stderr says when that commit is no longer on the branch."""
        response = call(
            target,
            lambda stub, md: stub.GetLastGreen(
                pb.GetLastGreenRequest(queue=queue, project=project, on_branch=on_branch),
                metadata=md,
            ),
        )
        if json_out:
            output.emit_json(response)
        if not response.found:
            why = " on the branch" if response.bookmark_off_branch else ""
            note(f"{queue}: no green commit recorded{why} yet")
            raise typer.Exit(EXIT_NOT_RECORDED)
        if not json_out:
            line(response.uri)
        if response.reachable == pb.REACHABILITY_OFF_BRANCH:
            note(
                "[yellow]warning[/yellow] this commit is no longer reachable from the branch "
                "head (the branch was rewritten); `last-green --on-branch` gives the newest "
                "green commit that is"
            )
        elif response.bookmark_off_branch:
            note(
                "note: the last-green bookmark is off the branch; this is the newest green "
                "commit on it"
            )

    @app.command(epilog=EXIT_HELP)
    @connection_options
    def gate(
        queue: Annotated[str, typer.Argument(help="Queue name.")],
        commit: CommitArgument,
        wait: Annotated[
            bool,
            typer.Option("--wait", help="Block until the commit is recorded (or --timeout)."),
        ] = False,
        timeout: Annotated[float, timeout_option("30m", "with --wait")] = "30m",  # type: ignore[assignment]
        project: ProjectOption = "",
        json_out: JsonOption = False,
        *,
        target: Target,
    ) -> None:
        """Exit 0 only when COMMIT is recorded green in QUEUE."""
        if wait:
            raise typer.Exit(_gate_wait(target, queue, commit, project, timeout, json_out))
        response = call(
            target,
            lambda stub, md: stub.GetGreenness(
                pb.GetGreennessRequest(queue=queue, uri=commit, project=project), metadata=md
            ),
        )
        raise typer.Exit(_verdict(queue, commit, response, json_out))

    @app.command(epilog=EXIT_HELP)
    @connection_options
    def revalidate(
        queue: Annotated[str, typer.Argument(help="Queue name.")],
        commit: CommitArgument,
        flaky: Annotated[
            bool,
            typer.Option(
                "--flaky", help="Also re-validate a broken verdict of a real build (a flake)."
            ),
        ] = False,
        reason: Annotated[str, typer.Option(help="Why, kept in the Request's reason.")] = "",
        project: Annotated[
            str,
            typer.Option(
                "--project",
                help="Re-validate only this project of COMMIT (a project-scoped build); "
                "the other projects keep their verdicts.",
            ),
        ] = "",
        wait: Annotated[
            bool, typer.Option("--wait", help="Follow the new attempt to its end.")
        ] = False,
        timeout: Annotated[float, timeout_option("10m", "with --wait")] = "10m",  # type: ignore[assignment]
        json_out: JsonOption = False,
        *,
        target: Target,
    ) -> None:
        """Validate COMMIT again (admin): a fail_closed verdict, or a broken one with --flaky.

        Green is final. With --project, only that project's verdict is questioned."""
        response = call(
            target,
            lambda stub, md: stub.Revalidate(
                pb.RevalidateRequest(
                    queue=queue, uri=commit, flaky=flaky, reason=reason, project=project
                ),
                metadata=md,
            ),
        )
        request = response.request
        state = "already in flight" if response.already_in_flight else "started"
        if not json_out:
            line(f"{request.id}  attempt {request.attempt} {state}")
        if wait:
            raise typer.Exit(_follow(target, request.id, timeout, json_out))
        if json_out:
            output.emit_json(response)

    @app.command()
    @connection_options
    def queues(
        json_out: JsonOption = False,
        *,
        target: Target,
    ) -> None:
        """Every configured Queue: last green commit and its age, in flight, waiting."""
        response = call(
            target, lambda stub, md: stub.ListQueues(pb.ListQueuesRequest(), metadata=md)
        )
        if json_out:
            output.emit_json(response)
            return
        rows = [
            [
                q.queue,
                q.last_green_uri or "-",
                output.age(q.last_green_at) or "-",
                str(q.in_flight),
                str(q.waiting),
                _staleness(q),
                q.latest_request_id or "-",
            ]
            for q in response.queues
        ]
        output.table(
            ["QUEUE", "LAST GREEN", "AGE", "IN FLIGHT", "WAITING", "STALENESS", "LATEST"], rows
        )

    @app.command()
    @connection_options
    def history(
        queue: Annotated[str, typer.Argument(help="Queue name.")],
        limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many Requests.")] = 20,
        project: ProjectOption = "",
        json_out: JsonOption = False,
        *,
        target: Target,
    ) -> None:
        """QUEUE's Requests, newest first: commit, title, trigger, strategy, state, verdict,
        duration."""

        async def pages(stub: Any, md: Metadata) -> list[pb.HistoryEntry]:
            entries: list[pb.HistoryEntry] = []
            token = ""
            while len(entries) < limit:
                page = await stub.ListRequests(
                    pb.ListRequestsRequest(
                        queue=queue,
                        project=project,
                        page_size=min(limit - len(entries), 500),
                        page_token=token,
                    ),
                    metadata=md,
                )
                entries.extend(page.entries)
                token = page.next_page_token
                if not token:
                    break
            return entries

        entries = call(target, pages)
        if json_out:
            output.emit_json({"entries": [output.as_dict(e) for e in entries]})
            return
        output.table(
            _HISTORY_COLUMNS,
            [_history_row(e) for e in entries],
        )


_HISTORY_COLUMNS = [
    "REQUEST", "COMMIT", "TITLE", "TRIGGER", "STRATEGY", "STATE", "VERDICT", "TOOK", "CREATED",
]  # fmt: skip


def _history_row(entry: pb.HistoryEntry) -> list[str]:
    r = entry.request
    took = ""
    if r.state in _TERMINAL:
        took = output.span(
            r.updated_at.ToDatetime().timestamp() - r.created_at.ToDatetime().timestamp()
        )
    verdict = _verdict_text(entry.fact) if entry.HasField("fact") else "-"
    return [
        r.id,
        _short(r.uri),
        r.title or "-",
        r.trigger or "-",
        _strategy_name(r.build_strategy) or "-",
        _state_name(r.state),
        verdict,
        took or "-",
        output.when(r.created_at),
    ]


def _verdict_text(fact: types_pb2.ValidationFact) -> str:
    """``green``, ``green (inherited)``, ``broken (build)``, ``broken 0.5 (build)``: the
    origin is shown wherever it is not a plain green build, and a partial degree (some
    projects broken) as its number."""
    origin = _origin_name(fact.origin)
    if fact.degree == 0.0:
        return "green" if origin == "build" else f"green ({origin})"
    degree = "" if fact.degree == 1.0 else f" {fact.degree:g}"
    return f"broken{degree} ({origin})"


def _short(uri: str) -> str:
    """The commit part of a URI on a terminal (its SHA, 12 digits); the whole URI in a pipe."""
    commit = uri.rpartition("@")[2]
    if output.is_terminal() and len(commit) >= 12 and all(c in "0123456789abcdef" for c in commit):
        return commit[:12]
    return uri


def _strategy_name(strategy: int) -> str:
    if strategy == types_pb2.BUILD_STRATEGY_UNSPECIFIED:
        return ""
    return types_pb2.BuildStrategy.Name(strategy).removeprefix("BUILD_STRATEGY_").lower()  # type: ignore[arg-type]


def _verdict(queue: str, commit: str, response: Any, json_out: bool) -> int:
    """Print a GetGreenness / WaitForGreenness answer; the gate's exit code."""
    if json_out:
        output.emit_json(response)
    uri = response.uri or commit
    if response.status == pb.GREENNESS_STATUS_RECORDED:
        fact = response.fact
        if fact.degree == 0.0:
            if not json_out:
                line(f"GREEN: {uri} ({fact.request_id})")
            return EXIT_GREEN
        if not json_out:
            line(
                f"NOT GREEN: {uri} degree={fact.degree:g} origin={_origin_name(fact.origin)} "
                f"{fact.reason}"
            )
        return EXIT_NOT_GREEN
    if not response.uri:
        note(f"NOT RECORDED: {queue} has not ingested a commit with SHA {commit}")
    elif response.HasField("request") and response.request.superseded_by:
        request = response.request
        note(
            f"NOT RECORDED: {uri} was superseded by {request.superseded_by} "
            f"({request.superseded_by_uri}) before it was validated; gate on that head instead"
        )
    elif response.HasField("request"):
        request = response.request
        note(f"NOT RECORDED: {uri} is {_state_name(request.state)} ({request.id}); no verdict yet")
    else:
        note(f"NOT RECORDED: {uri} has no verdict yet (absence is not green)")
    return EXIT_NOT_RECORDED


def _gate_wait(
    target: Target, queue: str, commit: str, project: str, timeout: float, json_out: bool
) -> int:
    """Follow WaitForGreenness until a final answer or the timeout; the gate's exit code."""

    async def wait(stub: Any, md: Metadata) -> Any:
        last: Any = None
        stream = stub.WaitForGreenness(
            pb.WaitForGreennessRequest(queue=queue, uri=commit, project=project),
            metadata=md,
            timeout=timeout,
        )
        try:
            async for answer in stream:
                last = answer
                if answer.final:
                    return answer
                if answer.HasField("request"):
                    r = answer.request
                    note(f"{output.when(r.updated_at)}  {r.id}  {_state_name(r.state)}  {r.reason}")
                elif not answer.uri:
                    return answer  # a SHA this Queue never ingested: nothing to wait for
                else:
                    note(f"waiting for {answer.uri} to be ingested")
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        note(f"still not recorded after {output.span(timeout)}")
        return last

    answer = call(target, wait)
    if answer is None:
        return EXIT_NOT_RECORDED
    if not answer.final:
        if json_out:
            output.emit_json(answer)
        return EXIT_NOT_RECORDED
    return _verdict(queue, commit, answer, json_out)


def _follow(target: Target, request_id: str, timeout: float, json_out: bool) -> int:
    """Follow one Request with GetRequest, printing each state change on stderr; exit
    0 succeeded, 1 failed, 2 superseded / cancelled / still running at the timeout."""

    async def poll(stub: Any, md: Metadata) -> types_pb2.Request:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            response = await stub.GetRequest(
                pb.GetRequestRequest(request_id=request_id), metadata=md
            )
            request: types_pb2.Request = response.request
            for change in request.transitions[seen:]:
                note(
                    f"{output.when(change.at)}  {_state_name(change.state)}"
                    + (f"  attempt {change.attempt}" if change.attempt > 1 else "")
                    + (f"  {change.reason}" if change.reason else "")
                )
            seen = len(request.transitions)
            if request.state in _TERMINAL or loop.time() > deadline:
                return request
            await asyncio.sleep(0.5)

    request = call(target, poll)
    if json_out:
        output.emit_json(request)
    else:
        _show_request(request, transitions=False)
    if request.state not in _TERMINAL:
        note(f"still {_state_name(request.state)} after {output.span(timeout)}")
        return EXIT_NOT_RECORDED
    if request.state == types_pb2.REQUEST_STATE_SUCCEEDED:
        return EXIT_GREEN
    if request.state == types_pb2.REQUEST_STATE_FAILED:
        return EXIT_NOT_GREEN
    if request.state == types_pb2.REQUEST_STATE_SUPERSEDED:
        newer = request.superseded_by or "a newer head"
        note(
            f"NOT RECORDED: superseded by {newer}"
            + (f" ({request.superseded_by_uri})" if request.superseded_by_uri else "")
        )
    return EXIT_NOT_RECORDED


def _show_projects(target: Target, request: types_pb2.Request, project: str) -> None:
    scopes = call(
        target,
        lambda stub, md: stub.GetProjectGreenness(
            pb.GetProjectGreennessRequest(queue=request.queue, uri=request.uri), metadata=md
        ),
    ).scopes
    if project:
        call(  # INVALID_ARGUMENT naming the configured projects when it is not one
            target,
            lambda stub, md: stub.GetGreenness(
                pb.GetGreennessRequest(queue=request.queue, uri=request.uri, project=project),
                metadata=md,
            ),
        )
        scopes = [s for s in scopes if s.project == project]
    elif len(scopes) <= 1:
        return
    line(f"verdicts of {request.uri}")
    output.table(["SCOPE", "VERDICT", "DEGREE", "ORIGIN", "DETAIL"], project_rows(scopes))


def _show_request(request: types_pb2.Request, *, transitions: bool = True) -> None:
    strategy = _strategy_name(request.build_strategy) or "-"
    attempt = f"  (attempt {request.attempt})" if request.attempt > 1 else ""
    line(f"{request.id}  {_state_name(request.state)}{attempt}")
    line(f"  uri       {request.uri}")
    line(f"  trigger   {request.trigger or '-'}")
    line(f"  strategy  {strategy}" + (f" (base {request.base_uri})" if request.base_uri else ""))
    if request.build_id:
        line(f"  build     {request.build_id}")
    if request.reason:
        line(f"  reason    {request.reason}")
    show_trigger(request)
    if request.superseded_by:
        line(f"  superseded by {request.superseded_by} ({request.superseded_by_uri})")
    if transitions and request.transitions:
        line("  history")
        for change in request.transitions:
            attempt_note = f" attempt {change.attempt}" if change.attempt > 1 else ""
            reason = f"  {change.reason}" if change.reason else ""
            line(f"    {output.when(change.at)}  {_state_name(change.state)}{attempt_note}{reason}")


def _staleness(q: pb.QueueSummary) -> str:
    """``stale for 2h``, ``fresh`` or ``-`` (never judged: no objective, or never stale)."""
    if not q.HasField("stale_since"):
        return "-"
    return f"stale for {output.age(q.stale_since)}" if q.stale else "fresh"
