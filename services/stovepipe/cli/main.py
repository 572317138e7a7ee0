"""``stovepipe``: one console script for servers, workers, operators and gates.

Imports of heavy modules happen inside commands so ``--help`` stays fast.
``main`` is the console script: it runs the Typer app with the exit codes the
gates document (a usage error is 4, not click's 2, which means "not recorded"
to a gate) and shows plain metavars in ``--help`` (``QUEUE``, ``TEXT``) instead
of type tags.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
import typer.main

from stovepipe.cli import (
    client_commands,
    hooks_commands,
    ingress_commands,
    logs_command,
    preflight_command,
)
from stovepipe.cli.dlq_commands import dlq_app
from stovepipe.cli.health_options import HealthHost, HealthPort, health_listen
from stovepipe.cli.process_options import MetricsHost, MetricsPort

app = typer.Typer(
    name="stovepipe",
    help="Tells you at which commit each branch, and each project in it, is green.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
ext_app = typer.Typer(help="Run a reference extension server.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(ext_app, name="ext")
app.add_typer(dlq_app, name="dlq")
client_commands.register(app)
hooks_commands.register(app)
ingress_commands.register(app)
logs_command.register(app)
preflight_command.register(app)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Path to stovepipe.yaml (default: the configuration of a `stovepipe up` running "
        "in this directory, else ./stovepipe.yaml if present, else defaults).",
        envvar="STOVEPIPE_CONFIG",
    ),
]
PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _installed_version() -> str:
    from importlib.metadata import version as dist_version

    return dist_version("stovepipe")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(_installed_version())
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """Tells you at which commit each branch, and each project in it, is green."""


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(_installed_version())


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOption = None,
    url: Annotated[
        str | None, typer.Option(help="Database URL; overrides the config and environment.")
    ] = None,
) -> None:
    """Create or migrate the schema to the newest revision."""
    from stovepipe.cli.loading import load_settings
    from stovepipe.redaction import redact_url
    from stovepipe.storage.migrate import current_revision, upgrade

    target = url or load_settings(config).storage.url
    upgrade(target)
    typer.echo(f"schema at revision {current_revision(target)} ({redact_url(target)})")


@ext_app.command("git", context_settings=PASSTHROUGH)
def ext_git(ctx: typer.Context) -> None:
    """SourceControl over the repositories of the Queues in --config. Options: --listen,
    --cache-dir, --token-env/--token-file, --tls-cert/--tls-key/--client-ca."""
    from stovepipe.extensions.sourcecontrol.git import main as git_main

    raise typer.Exit(git_main(list(ctx.args)))


@ext_app.command("local-runner", context_settings=PASSTHROUGH)
def ext_local_runner(ctx: typer.Context) -> None:
    """BuildRunner that runs targets as local subprocesses. Options: --listen,
    --source-control, --work-dir, --token-env/--token-file, --source-control-token-env."""
    from stovepipe.extensions.buildrunner.local import main as runner_main

    raise typer.Exit(runner_main(list(ctx.args)))


@ext_app.command("hooks", context_settings=PASSTHROUGH)
def ext_hooks(ctx: typer.Context) -> None:
    """HooksService for the hooks of the Queues in --config: signed webhooks, Kafka topics,
    log lines. Options: --listen, --config, --token-env/--token-file, --tls-cert/--tls-key."""
    from stovepipe.extensions.hooks.reference import main as hooks_main

    raise typer.Exit(hooks_main(list(ctx.args)))


@ext_app.command("project-mapper", context_settings=PASSTHROUGH)
def ext_project_mapper(ctx: typer.Context) -> None:
    """ProjectMapper that attributes targets and changed files to the projects in each
    call (path globs, target patterns). Options: --listen, --token-env/--token-file,
    --tls-cert/--tls-key/--client-ca."""
    from stovepipe.extensions.projectmapper.config import main as mapper_main

    raise typer.Exit(mapper_main(list(ctx.args)))


@app.command()
def api(
    config: ConfigOption = None,
    health_port: HealthPort = None,
    health_host: HealthHost = "0.0.0.0",  # noqa: S104 - a readiness probe reaches the pod's address
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = None,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            min=1,
            max=64,
            help="API processes sharing the api.listen port (one core each). A second "
            "installation on the same port is refused (exit 1). Process i serves /metrics "
            "on the metrics port + i.",
        ),
    ] = 1,
) -> None:
    """Serve the gRPC API (StovepipeService, health, reflection).

    Exit 1 when the port is taken (by another installation too), 2 when the API cannot
    run as configured."""
    from stovepipe.cli.loading import load_settings
    from stovepipe.runtime.api_process import run_api

    asyncio.run(
        run_api(
            load_settings(config, running_up=False),
            health_listen(health_host, health_port),
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            processes=processes,
            config_path=str(config) if config else None,
        )
    )


@app.command("console")
def console_command(
    config: ConfigOption = None,
    listen: Annotated[
        str | None,
        typer.Option(help="host:port to serve on (default: console.listen from the config)."),
    ] = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = None,
) -> None:
    """Serve the read-only web console, a client of the API (console.* in the config).
    Exit 2 when it cannot run as configured (unreadable TLS file or secret, login tokens
    over plaintext on a network address)."""
    from stovepipe.cli.loading import load_settings
    from stovepipe.console.process import run_console

    asyncio.run(
        run_console(
            load_settings(config), listen, metrics_port=metrics_port, metrics_host=metrics_host
        )
    )


@app.command()
def worker(
    stage: Annotated[
        str,
        typer.Argument(
            help="A registered stage (process, build, ...), or all of them in one process "
            "(all); a wrong name lists them."
        ),
    ],
    config: ConfigOption = None,
    health_port: HealthPort = None,
    health_host: HealthHost = "0.0.0.0",  # noqa: S104 - a readiness probe reaches the pod's address
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = None,
) -> None:
    """Run one registered stage (or all) as a process until SIGTERM."""
    from stovepipe.cli.loading import load_settings
    from stovepipe.runtime.registry import ALL, STAGES, WORKER_NAMES
    from stovepipe.runtime.worker_process import run_worker

    if stage not in WORKER_NAMES:
        listing = "".join(f"\n  {s.name:<12} {s.summary}" for s in STAGES)
        listing += f"\n  {ALL:<12} every stage above in one process"
        raise typer.BadParameter(f"unknown stage {stage!r}; the stages are:{listing}")
    asyncio.run(
        run_worker(
            load_settings(config, running_up=False),
            stage,
            health_listen(health_host, health_port),
            metrics_port=metrics_port,
            metrics_host=metrics_host,
        )
    )


@app.command()
def health(
    address: Annotated[
        str,
        typer.Argument(
            help="host:port of the API, an extension server or a worker's --health-port.",
            envvar="STOVEPIPE_HEALTH_ADDRESS",
            show_default=False,
        ),
    ],
    service: Annotated[
        str, typer.Option(help="The service to ask about (default: the whole server).")
    ] = "",
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the answer.")] = 3.0,
    tls: Annotated[
        bool, typer.Option("--tls", help="Connect over TLS, trusting the system CAs.")
    ] = False,
    ca_file: Annotated[
        Path | None, typer.Option(help="CA (PEM) of the server's certificate; implies --tls.")
    ] = None,
    cert: Annotated[
        Path | None, typer.Option(help="Client certificate (PEM) for a mutual-TLS server.")
    ] = None,
    key: Annotated[Path | None, typer.Option(help="Key (PEM) of --cert.")] = None,
) -> None:
    """Exit 0 when ADDRESS answers gRPC health SERVING, 1 otherwise (a container probe)."""
    from stovepipe.runtime.health import check_health, tls_credentials

    if (cert is None) != (key is None):
        raise typer.BadParameter("--cert and --key go together")
    credentials = None
    if tls or ca_file is not None or cert is not None:
        try:
            credentials = tls_credentials(ca_file, cert, key)
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {exc.filename}: {exc.strerror}") from None
    answer = asyncio.run(
        check_health(address, service=service, timeout_s=timeout, credentials=credentials)
    )
    typer.echo(f"{address}: {answer.said}")
    raise typer.Exit(0 if answer.serving else 1)


@app.command()
def up(
    config: ConfigOption = None,
    state_dir: Annotated[
        Path, typer.Option(help="Where the embedded stack keeps its database, logs and worktrees.")
    ] = Path(".stovepipe"),
    no_sandbox: Annotated[
        bool,
        typer.Option(
            "--no-sandbox",
            help="Run builds as plain processes instead of in the bubblewrap sandbox: "
            "only for code you trust.",
        ),
    ] = False,
    per_stage_workers: Annotated[
        bool,
        typer.Option(
            "--per-stage-workers",
            help="One worker process per stage, as production runs them, instead of every "
            "stage in one process (worker all).",
        ),
    ] = False,
) -> None:
    """Run everything on embedded defaults: broker, SQLite, extensions, workers, API and
    console."""
    from stovepipe.cli.loading import load_settings
    from stovepipe.runtime.embedded import run_embedded_stack

    settings = load_settings(config, running_up=False)
    raise typer.Exit(
        asyncio.run(
            run_embedded_stack(
                settings,
                state_dir,
                sandbox=not no_sandbox,
                per_stage_workers=per_stage_workers,
            )
        )
    )


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the demo's temporary directory.")] = False,
) -> None:
    """Build a sample repository, validate three commits end to end, print the verdicts."""
    from stovepipe.runtime.demo import run_demo

    raise typer.Exit(asyncio.run(run_demo(keep=keep)))


USAGE_ERROR = 2
"""The exit code Typer gives its usage errors (missing argument, bad value, unknown option)."""


_TYPE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH"}


def _plain_metavars(command: Any) -> None:
    """Name every parameter's value in ``--help`` the classic way (``QUEUE``, ``TEXT``,
    ``PATH``) and show nothing for flags, instead of Typer's ``<str>`` / ``<bool>`` tags."""
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if isinstance(param, typer.core.TyperArgument):
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
            setattr(param, "display_type_rich", lambda ctx: "")  # noqa: B010 - its name says it
        elif isinstance(param, typer.core.TyperOption) and param.metavar is None:
            if param.is_flag or param.count:
                param.metavar = ""
            else:
                label = param.display_type(typer.Context(command)).strip("<>")
                param.metavar = _TYPE_NAMES.get(label, label.upper().replace(" ", "_"))
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)


def main(argv: list[str] | None = None) -> None:
    """The console script: exit 4 for usage errors, the command's own code otherwise."""
    from typer import rich_utils

    command = typer.main.get_command(app)
    _plain_metavars(command)
    try:
        code = command.main(args=argv, prog_name="stovepipe", standalone_mode=False)
    except typer.TyperException as exc:  # Typer's usage and file errors
        rich_utils.rich_format_error(exc)  # type: ignore[arg-type]
        usage = getattr(exc, "exit_code", 1) == USAGE_ERROR
        sys.exit(client_commands.EXIT_USAGE if usage else getattr(exc, "exit_code", 1))
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a start-up failure: one line, the traceback kept aside
        from stovepipe.cli.startup_errors import report

        given = argv if argv is not None else sys.argv[1:]
        words = list(itertools.takewhile(lambda a: not a.startswith("-"), given))
        sys.exit(report(" ".join(words[:2]) or "stovepipe", exc))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
