"""doc/integrations.md: every snippet parses or compiles, and the cron and CronJob ones
report a head to a real `stovepipe up` (which also runs the poller and the webhook
receiver, shown in its table)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from croniter import croniter

from harness.ingress import commit, make_repo
from harness.push_payloads import delivery
from stovepipe.runtime.processes import free_port
from stovepipe.testing import until

DOC = Path(__file__).resolve().parents[2] / "doc" / "integrations.md"
CLI = [sys.executable, "-m", "stovepipe.cli.main"]
API_PLACEHOLDER = "stovepipe.internal:50051"
TOKEN_FILE_PLACEHOLDER = "/run/secrets/stovepipe-ingest-token"
LOG_PLACEHOLDER = "/var/log/stovepipe-ingest.log"


def snippet(name: str) -> str:
    """The fenced block after ``<!-- snippet: name -->``."""
    match = re.search(
        rf"<!-- snippet: {re.escape(name)} -->\n```[a-z]*\n(.*?)\n```", DOC.read_text(), re.S
    )
    assert match, f"doc/integrations.md has no snippet {name!r}"
    return match.group(1)


def cron_entry() -> tuple[str, str]:
    """The crontab line: its five schedule fields and its command."""
    (line,) = [ln for ln in snippet("crontab").splitlines() if ln and not ln.startswith("#")]
    fields = line.split(maxsplit=5)
    return " ".join(fields[:5]), fields[5]


def test_every_snippet_parses_or_compiles() -> None:
    schedule, command = cron_entry()
    assert croniter.is_valid(schedule)
    assert "stovepipe ingest" in command
    try:
        import kubernetes_validate
    except ModuleNotFoundError:
        pytest.fail("kubernetes-validate is missing: pip install -e '.[dev]'")
    cronjob = yaml.safe_load(snippet("cronjob"))
    kubernetes_validate.validate(cronjob, "1.30.0", strict=True)
    assert croniter.is_valid(cronjob["spec"]["schedule"])
    workflow = yaml.safe_load(snippet("github-actions"))
    steps = workflow["jobs"]["deploy"]["steps"]
    assert any("stovepipe gate" in step.get("run", "") for step in steps)
    for name in ("airflow", "dagster"):
        compile(snippet(name), f"doc/integrations.md:{name}", "exec")


def _container_command(
    cronjob: dict[str, Any], token: str, api: str
) -> tuple[list[str], dict[str, str]]:
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for variable in container["env"]:
        if "valueFrom" in variable:
            env[variable["name"]] = token  # the Secret's value
        else:
            env[variable["name"]] = variable["value"].replace(API_PLACEHOLDER, api)
    return [*CLI, *container["args"]], env


def _read_until(up: subprocess.Popen[str], marker: str, seen: list[str]) -> None:
    assert up.stdout is not None
    for line in up.stdout:
        seen.append(line)
        if marker in line:
            return
    raise AssertionError("stovepipe up ended before it was ready:\n" + "".join(seen))


@pytest.mark.e2e
@pytest.mark.broker
@pytest.mark.timeout(480)  # `up` starts eleven processes; slow on a loaded 2-core machine
async def test_cron_and_cronjob_snippets_ingest_through_a_real_stack(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "acme" / "monorepo")
    polled = make_repo(tmp_path / "acme" / "polled")
    api = f"127.0.0.1:{free_port()}"
    hooks = f"127.0.0.1:{free_port()}"
    ingest_token, admin_token, secret = "ingest-token-0a1b", "admin-token-9f8e", "hook-secret"
    token_file = tmp_path / "ingest-token"
    token_file.write_text(ingest_token)
    target = [{"name": "check", "command": "test -f ok", "timeout_seconds": 60}]
    config = tmp_path / "stovepipe.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "api": {
                    "listen": api,
                    "tokens": [
                        {"name": "cron", "role": "ingest", "token_env": "T_INGEST"},
                        {"name": "ops", "role": "admin", "token_env": "T_ADMIN"},
                    ],
                },
                "webhooks": {"listen": hooks, "github": {"secret_env": "T_HOOK"}},
                "workers": {"buildsignal_poll_interval_seconds": 0.2},
                "queues": [
                    {
                        "name": "monorepo/main",
                        "source": {"repository": str(repo.path)},
                        "build": {"targets": target},
                    },
                    {
                        "name": "polled/main",
                        "source": {"repository": str(polled.path)},
                        "build": {"targets": target},
                        "poll": {"every": 1},
                    },
                ],
            }
        )
    )
    env = {
        **os.environ,
        "T_INGEST": ingest_token,
        "T_ADMIN": admin_token,
        "T_HOOK": secret,
        "STOVEPIPE_API": api,
        "COLUMNS": "1000",
    }
    up = subprocess.Popen(
        [
            *CLI,
            "up",
            "--config",
            str(config),
            "--state-dir",
            str(tmp_path / "state"),
            "--no-sandbox",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    seen: list[str] = []
    admin = {**env, "STOVEPIPE_TOKEN": admin_token}
    try:
        await asyncio.wait_for(asyncio.to_thread(_read_until, up, "API ready at", seen), 240)
        table = "".join(seen)
        assert re.search(r"│ poller\s", table) and re.search(r"│ webhooks\s", table), table

        # cron: the command part of the crontab line, as cron's shell would run it
        commit(repo, green=True)
        _, command = cron_entry()
        log = tmp_path / "ingest.log"
        command = (
            command.replace(API_PLACEHOLDER, api)
            .replace(TOKEN_FILE_PLACEHOLDER, str(token_file))
            .replace(LOG_PLACEHOLDER, str(log))
            .replace("stovepipe ingest", " ".join(map(shlex.quote, CLI)) + " ingest", 1)
        )
        ran = await asyncio.to_thread(
            subprocess.run,
            ["/bin/sh", "-c", command],
            env={**env, "STOVEPIPE_API": ""},
            timeout=120,
        )
        assert ran.returncode == 0, log.read_text()
        from_cron = log.read_text().split()[0]
        waited = await asyncio.to_thread(
            subprocess.run, [*CLI, "status", from_cron, "--wait", "--timeout", "120"],
            env=admin, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert re.search(r"trigger\s+schedule", waited.stdout), waited.stdout

        # the CronJob's container, run with the env it declares (the Secret is the token)
        sha = commit(repo, green=True)
        argv, job_env = _container_command(yaml.safe_load(snippet("cronjob")), ingest_token, api)
        job = await asyncio.to_thread(
            subprocess.run, argv, env={**env, **job_env}, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert job.returncode == 0, job.stdout + job.stderr
        request_id, uri = job.stdout.split()[:2]
        assert uri.endswith(sha)
        status = await asyncio.to_thread(
            subprocess.run, [*CLI, "status", request_id], env=admin, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert re.search(r"trigger\s+schedule", status.stdout), status.stdout

        # the poller `up` started ingested the polled Queue with no call at all
        def polled_request() -> bool:
            shown = subprocess.run(
                [*CLI, "status", "request/polled/main/1"], env=admin, capture_output=True,
                text=True, timeout=60, check=False,
            )  # fmt: skip
            return shown.returncode == 0 and bool(re.search(r"trigger\s+poll", shown.stdout))

        await until(
            lambda: asyncio.to_thread(polled_request), timeout_s=120, what="the poller's Request"
        )

        # the webhook receiver `up` started takes a signed push
        commit(repo, green=True)
        body, headers = delivery("github", secret, "acme", "monorepo", "a" * 40)
        request = urllib.request.Request(
            f"http://{hooks}/hooks/github", data=body, headers=headers, method="POST"
        )
        with await asyncio.to_thread(urllib.request.urlopen, request, timeout=30) as answer:
            assert answer.status == 202
            assert json.loads(answer.read())["status"] == "ingested"
    finally:
        up.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.to_thread(up.communicate, timeout=90)
    assert up.returncode == 0, "".join(seen) + rest
