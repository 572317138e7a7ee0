"""`stovepipe up` with telemetry on: every process serves /metrics, logs JSON lines with
the Request's context, exports its spans to one trace, and never logs the API token."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.otlp import OtlpReceiver, tree_problems
from stovepipe.runtime.processes import free_port
from stovepipe.runtime.sample_repo import STEPS, SampleRepo, build_targets
from stovepipe.testing import until

pytestmark = [pytest.mark.e2e]

CLI = [sys.executable, "-m", "stovepipe.cli.main"]
QUEUE = "ops/main"
PLAIN_STDOUT = ("worker ", "listening on ")
"""The readiness lines processes print on stdout for people; everything else is JSON."""


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _metrics_ports(up_pid: int) -> dict[str, int]:
    """Component (``api``, ``worker-process``, ...) → its metrics port, from the argv
    `stovepipe up` gave each child."""
    ports: dict[str, int] = {}
    for pid in _descendants(up_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "--metrics-port" not in argv or "stovepipe.cli.main" not in argv:
            continue
        command = argv.index("stovepipe.cli.main") + 1
        verb = argv[command]
        name = f"worker-{argv[command + 1]}" if verb == "worker" else verb
        ports[name] = int(argv[argv.index("--metrics-port") + 1])
    return ports


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float | None:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.mark.timeout(600)  # two starts of the whole stack
async def test_up_exports_metrics_json_logs_and_one_trace_and_never_the_token(
    tmp_path: Path,
) -> None:
    receiver = OtlpReceiver()
    otlp = await receiver.start()
    token = f"tok-{secrets.token_hex(16)}"
    repo = SampleRepo(tmp_path / "repo").init()
    api = f"127.0.0.1:{free_port()}"
    config = tmp_path / "stovepipe.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "api": {
                    "listen": api,
                    "tokens": [{"name": "ops", "role": "admin", "token_env": "OPS_TOKEN"}],
                },
                "telemetry": {"otlp_endpoint": otlp, "otlp_insecure": True, "log_format": "json"},
                "workers": {"buildsignal_poll_interval_seconds": 0.2},
                "queues": [
                    {
                        "name": QUEUE,
                        "source": {"repository": str(repo.path)},
                        "build": {"targets": build_targets()},
                        "staleness": {"max_age": "6h", "max_commits": 5},
                    }
                ],
            }
        )
    )
    env = {**os.environ, "STOVEPIPE_API": api, "OPS_TOKEN": token, "STOVEPIPE_TOKEN": token}
    state = tmp_path / "state"

    def start_up() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*CLI, "up", "--config", str(config), "--state-dir", str(state)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )

    async def answering() -> bool:
        assert up.poll() is None, f"stovepipe up exited early with {up.returncode}"
        done = await asyncio.to_thread(_cli, "last-green", QUEUE, env=env)
        return done.returncode in (0, 2)

    async def stop_up() -> str:
        up.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(up.communicate, timeout=90)
        assert up.returncode == 0, output
        return output

    outputs: list[str] = []
    up = start_up()
    try:
        await until(answering, timeout_s=120, what="the API of `stovepipe up`")
        repo.commit(STEPS[0])
        green = await asyncio.to_thread(_cli, "ingest", QUEUE, "--wait", env=env)
        assert green.returncode == 0, green.stdout + green.stderr
        request_id = green.stdout.split()[0]

        ports = _metrics_ports(up.pid)
        # the default: every stage in one process, `worker all`
        assert "api" in ports, ports
        assert {name for name in ports if name.startswith("worker-")} == {"worker-all"}, ports
        api_metrics = _scrape(ports["api"])
        assert _value(api_metrics, "stovepipe_api_requests_total", method="Ingest", code="OK")
        assert _value(api_metrics, "stovepipe_api_request_seconds_count", method="Ingest")
        process = _scrape(ports["worker-all"])
        handled = _value(
            process,
            "stovepipe_stage_records_total",
            stage="process",
            topic="stovepipe.process",
            outcome="handled",
        )
        assert handled and handled >= 1
        assert _value(
            process,
            "stovepipe_stage_handler_seconds_count",
            stage="process",
            topic="stovepipe.process",
        )
        assert any(name == "stovepipe_consumer_lag_records" for name, _ in process)
        record = process
        assert (
            _value(
                record,
                "stovepipe_verdicts_total",
                queue=QUEUE,
                project="",
                result="green",
                origin="build",
            )
            == 1.0
        )
        count = "stovepipe_ingest_to_verdict_seconds_count"
        assert _value(record, count, queue=QUEUE, project="") == 1.0

        def queue_gauges() -> bool:
            samples = _scrape(ports["api"])
            age = _value(samples, "stovepipe_queue_last_green_age_seconds", queue=QUEUE)
            behind = _value(samples, "stovepipe_queue_commits_since_last_green", queue=QUEUE)
            stale = _value(samples, "stovepipe_queue_stale", queue=QUEUE)
            return age is not None and behind == 0.0 and stale == 0.0

        await until(queue_gauges, timeout_s=90, what="the freshness gauges of the Queue")
        for samples in (api_metrics, process, record):
            assert not any(request_id in str(labels) for _, labels in samples), (
                "a request id became a label"
            )

        def traced() -> set[str]:
            return {
                s.trace_id
                for s in receiver.spans
                if s.attributes.get("stovepipe.request.id") == request_id
            }

        traces = await until(traced, timeout_s=60, what="spans of the Request")
        assert len(traces) == 1
        trace_id = traces.pop()

        def whole() -> bool:
            spans = receiver.trace(trace_id)
            names = {s.name for s in spans}
            return "process stovepipe.record" in names and not tree_problems(spans)

        await until(whole, timeout_s=60, what="the Request's trace to arrive whole")
        components = {s.service_instance for s in receiver.trace(trace_id)}
        assert {"api", "worker-all"} <= components, components

        # a red verdict names its failed target, and its log survives a restart of `up`
        repo.commit(STEPS[1])
        red = await asyncio.to_thread(_cli, "ingest", QUEUE, "--wait", env=env)
        assert red.returncode == 1, red.stdout + red.stderr
        red_id = red.stdout.split()[0]
        status = await asyncio.to_thread(_cli, "status", red_id, env=env)
        assert "target unit-tests (exit 1) failed" in " ".join(status.stdout.split())
        before = await asyncio.to_thread(_cli, "logs", red_id, env=env)
        assert before.returncode == 0, before.stdout + before.stderr
        assert before.stdout.startswith("== unit-tests (attempt 1, build ")
        outputs.append(await stop_up())
        up = start_up()
        await until(answering, timeout_s=120, what="the API of `stovepipe up`, restarted")
        after = await asyncio.to_thread(_cli, "logs", red_id, "--target", "unit-tests", env=env)
        assert after.returncode == 0 and after.stdout == before.stdout, after.stderr
        none = await asyncio.to_thread(_cli, "logs", red_id, "--target", "docs", env=env)
        assert none.returncode == 2
    finally:
        if up.poll() is None:
            outputs.append(await stop_up())
        await receiver.stop()

    output = "\n".join(outputs)
    assert token not in output
    contexts = []
    for path in sorted((state / "logs").glob("*.log")):
        text = path.read_text(errors="replace")
        assert token not in text, f"the API token is in {path.name}"
        if not (path.name.startswith("worker-") or path.name == "api.log"):
            continue
        for line in text.splitlines():
            if not line.strip() or line.startswith(PLAIN_STDOUT):
                continue
            entry = json.loads(line)  # every other line is one JSON object
            assert {"timestamp", "level", "event", "component"} <= set(entry), line
            if entry.get("request_id") == request_id:
                contexts.append(entry)
    assert contexts, "no log line carried the Request's context"
    assert all(
        {"queue", "stage", "attempt", "trace_id"} <= set(entry) and entry["queue"] == QUEUE
        for entry in contexts
    ), contexts[:3]
    for path in state.rglob("*"):
        if path.is_file() and path.suffix != ".db":
            assert token.encode() not in path.read_bytes(), f"the API token is in {path}"
    assert not any(token in str(s.attributes) for s in receiver.spans)
