"""``stovepipe preflight``: check a configuration is ready for production before starting it.

Exit codes: 0 every check passed (warnings allowed), 1 a check failed (or, with
``--strict``, warned), 2 the configuration itself could not be loaded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2

_MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


def register(app: typer.Typer) -> None:
    @app.command()
    def preflight(
        config: Annotated[
            Path | None,
            typer.Option(
                "--config",
                "-c",
                help="Path to stovepipe.yaml (default: ./stovepipe.yaml if present, else "
                "defaults).",
                envvar="STOVEPIPE_CONFIG",
            ),
        ] = None,
        strict: Annotated[
            bool, typer.Option("--strict", help="Treat warnings as failures (exit 1).")
        ] = False,
        as_json: Annotated[
            bool, typer.Option("--json", help="One JSON document: every check and the verdict.")
        ] = False,
    ) -> None:
        """Check broker, topics, database schema, extensions, secrets, TLS files, API
        tokens and repositories; print pass/warn/fail with a fix for each problem.
        Exit 0 ready, 1 a check failed (or warned, with --strict), 2 bad configuration."""
        from stovepipe.cli.loading import load_settings
        from stovepipe.runtime.preflight import exit_code, run_checks

        settings = load_settings(config)  # exits 2 with the problems on a bad file
        results = asyncio.run(run_checks(settings))
        code = exit_code(results, strict=strict)
        if as_json:
            document = {
                "ok": code == EXIT_OK,
                "strict": strict,
                "checks": [dataclasses.asdict(r) for r in results],
            }
            typer.echo(json.dumps(document, indent=2))
            raise typer.Exit(code)
        width = max(len(r.check) for r in results)
        for result in results:
            typer.echo(f"{_MARK[result.status]}  {result.check:<{width}}  {result.detail}")
            if result.fix:
                typer.echo(f"      {'':<{width}}  fix: {result.fix}")
        counts = {s: sum(r.status == s for r in results) for s in _MARK}
        summary = f"{counts['pass']} passed, {counts['warn']} warned, {counts['fail']} failed"
        verdict = "ready" if code == EXIT_OK else "not ready"
        typer.echo(f"{summary}: {verdict}{' (--strict)' if strict and counts['warn'] else ''}")
        raise typer.Exit(code)
