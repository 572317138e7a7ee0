"""The console's pages, access rules and re-validation, over HTTP against a real API.

The API is the real gRPC server over a migrated SQLite store, fed by the stage
handlers with fake extensions (``stage_harness``), so every Request state can be
produced on purpose: fail-closed, green, running, superseded, waiting. The
console is configured from a ``console`` section exactly as ``stovepipe
console`` would be, and read with plain HTTP requests.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from harness.console import running_console
from harness.stages import Pipeline, queue_config
from stovepipe.api.server import StovepipeApi, serve_api
from stovepipe.config import StovepipeConfig, config_from_mapping
from stovepipe.console.client import ConsoleClient
from stovepipe.console.live import RESYNC, LiveFeed
from stovepipe.extensions.buildrunner.fake import Outcome
from stovepipe.grpcutil import GrpcServer
from stovepipe.runtime.processes import free_port
from stovepipe.storage import Store, create_engine
from stovepipe.storage.migrate import upgrade_async
from stovepipe.v1 import stovepipe_service_pb2 as pb
from stovepipe.v1 import stovepipe_service_pb2_grpc as pb_grpc
from stovepipe.v1 import types_pb2

Q = "mono/main"
READ_TOKEN = "read-token-for-the-console"
ADMIN_TOKEN = "admin-token-for-revalidate"


@dataclass
class History:
    """One Queue whose commits are, oldest first: fail-closed, green, running, superseded,
    waiting."""

    api: GrpcServer
    stub: Any
    pipe: Pipeline
    uris: dict[str, str]
    request_ids: dict[str, str]

    def config(self, console: dict[str, Any]) -> StovepipeConfig:
        data = self.pipe.config.model_dump(mode="json", exclude_none=True)
        data["api"] = {"listen": self.api.address}
        data["console"] = {
            "api": {"address": self.api.address, "token_env": "CONSOLE_READ_TOKEN"},
            **console,
        }
        return config_from_mapping(data, source="test")


@pytest.fixture
async def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[History]:
    monkeypatch.setenv("CONSOLE_READ_TOKEN", READ_TOKEN)
    monkeypatch.setenv("CONSOLE_ADMIN_TOKEN", ADMIN_TOKEN)
    url = f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    store = Store(engine)
    pipe = Pipeline(store, [queue_config(Q)])
    server = await serve_api(
        StovepipeApi(store, pipe.config, pipe.ingester, pipe.revalidator),
        "127.0.0.1:0",
        tokens={READ_TOKEN: "read", ADMIN_TOKEN: "admin"},
    )
    channel = grpc.aio.insecure_channel(server.address)
    stub = pb_grpc.StovepipeServiceStub(channel)
    admin = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
    uris: dict[str, str] = {}
    ids: dict[str, str] = {}
    outcomes = {
        "fail-closed": Outcome.errored("runner lost the checkout <script>alert(1)</script>"),
        "green": Outcome.succeed(),
        "running": Outcome.hang(),
        "superseded": Outcome.succeed(),
        "waiting": Outcome.succeed(),
    }
    try:
        for i, (name, outcome) in enumerate(outcomes.items()):
            uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"src/a.py": str(i)}))
            pipe.runner.script(uri, outcome)
            ingested = await stub.Ingest(pb.IngestRequest(queue=Q, trigger="test"), metadata=admin)
            uris[name], ids[name] = uri, ingested.request_id
            if name != "superseded":  # ingested back to back with the next head
                await pipe.drain()
        yield History(server, stub, pipe, uris, ids)
    finally:
        await channel.close(None)
        await server.stop(0)
        await engine.dispose()


def _get(url: str, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, str, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30, **kw) as answer:
            return int(answer.status), answer.read().decode(), answer.headers
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(), exc.headers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _post(
    url: str, form: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, str, Any]:
    opener = urllib.request.build_opener(_NoRedirect)
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with opener.open(request, timeout=30) as answer:
            return int(answer.status), answer.read().decode(), answer.headers
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(), exc.headers


async def fetch(url: str, **kw: Any) -> tuple[int, str, Any]:
    return await asyncio.to_thread(_get, url, **kw)


async def post(url: str, form: dict[str, str], **kw: Any) -> tuple[int, str, Any]:
    return await asyncio.to_thread(_post, url, form, **kw)


def _states(html: str) -> dict[str, str]:
    """data-uri → the whole-repo cell's state, in page order."""
    rows = re.findall(r'<tr data-uri="([^"]+)".*?data-state="([^"]+)"', html, re.S)
    return dict(rows)


async def test_the_grid_shows_every_state_and_the_queues_page_counts_them(
    history: History,
) -> None:
    async with running_console(history.config({})) as base:
        status, html, headers = await fetch(f"{base}/queues/{Q}")
        assert status == 200, html
        assert re.fullmatch(r"app;dur=[0-9.]+", headers["Server-Timing"])
        states = _states(html)
        expected = ["waiting", "superseded", "running", "green", "fail-closed"]
        assert list(states.values()) == expected
        assert list(states) == [history.uris[name] for name in expected]
        marked = re.search(r'<tr data-uri="([^"]+)" class="marked"', html)
        assert marked is not None and marked.group(1) == history.uris["green"]
        # each row carries the commit's title, as SourceControl described it at ingest
        assert re.findall(r'<td class="title">([^<]*)</td>', html) == ["change"] * 5

        status, html, _ = await fetch(f"{base}/")
        assert status == 200
        row = re.search(r'<tr data-queue="mono/main" data-state="([^"]+)">(.*?)</tr>', html, re.S)
        assert row is not None
        assert row.group(1) == "pending"  # newer commits than the last green are in flight
        cells = re.findall(r"<td>(\d+\+?)</td>", row.group(2))
        assert cells == ["3", "1", "1"]  # since last green, in flight, waiting

        query = urllib.parse.urlencode(
            {"queue": Q, "uri": history.uris["fail-closed"], "request": ""}
        )
        status, html, _ = await fetch(f"{base}/commit?{query}")
        assert status == 200
        assert 'id="verdict">fail-closed<' in html
        assert "fail closed" in html and history.request_ids["fail-closed"] in html
        # what extensions say is shown as text, never as markup
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script>alert" not in html
        assert "Re-validate" not in html  # no admin token configured
        # the Request's transitions, oldest first, each with its time
        transitions = re.findall(r'<tr data-state="([a-z ]+)"><td>(\d{4}-\d\d-\d\d [0-9:.]+)', html)
        assert [state for state, _ in transitions] == ["accepted", "processing", "failed"]
        assert 'id="no-target-logs"' in html  # the fake runner kept no log
        assert "This Queue has no hook subscription." in html
        status, html, _ = await fetch(
            f"{base}/commit?{urllib.parse.urlencode({'queue': Q, 'uri': 'not a commit'})}"
        )
        assert status == 400 and "Bad commit" in html

        status, html, _ = await fetch(f"{base}/queues/not/configured")
        assert status == 404
        status, html, _ = await fetch(f"{base}/queues/{Q}?page=garbage")
        assert status == 400 and "page" in html.lower()
        status, _, _ = await fetch(f"{base}/revalidate?queue={Q}&uri=x")
        assert status == 403


async def test_the_console_needs_its_read_token(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSOLE_READ_TOKEN", "not-a-token-the-api-knows")
    async with running_console(history.config({})) as base:
        status, html, _ = await fetch(f"{base}/queues/{Q}")
        assert status == 502 and "UNAUTHENTICATED" in html
        assert READ_TOKEN not in html
        status, _, _ = await fetch(f"{base}/healthz")
        assert status == 503


async def test_an_unreachable_api_is_said_not_hidden(history: History) -> None:
    config = history.config({"api": {"address": f"127.0.0.1:{free_port()}"}})
    async with running_console(config) as base:
        status, html, _ = await fetch(f"{base}/queues/{Q}")
        assert status == 502 and "UNAVAILABLE" in html
        status, _, _ = await fetch(f"{base}/")
        assert status == 502
        status, _, _ = await fetch(f"{base}/healthz")
        assert status == 503


async def test_the_live_feed_tells_pages_to_catch_up_after_losing_its_stream(
    history: History,
) -> None:
    # This API has no event feed: WatchEvents fails at once, as while the API restarts.
    client = ConsoleClient(history.api.address, token=READ_TOKEN)
    feed = LiveFeed(client)
    try:
        async with feed.subscribe() as page:
            assert await asyncio.wait_for(page.get(), 30) == RESYNC
            assert feed.streaming
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while feed.streaming:  # the last page left: the upstream stream is let go
            assert loop.time() < deadline, "the feed kept streaming for nobody"
            await asyncio.sleep(0.05)
    finally:
        await feed.close()
        await client.close()


async def test_login_by_token(history: History, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALICE_CONSOLE_TOKEN", "alice-secret")
    section = {"login_tokens": [{"name": "alice", "token_env": "ALICE_CONSOLE_TOKEN"}]}
    async with running_console(history.config(section)) as base:
        status, html, _ = await fetch(f"{base}/queues/{Q}")
        assert status == 200 and "Sign in" in html and "data-uri" not in html
        status, _, _ = await fetch(f"{base}/events")
        assert status == 401
        status, _, _ = await post(f"{base}/login", {"token": "x" * 100_000})
        assert status == 413
        status, html, _ = await post(f"{base}/login", {"token": "wrong"})
        assert status == 401 and "not valid" in html
        status, _, headers = await post(f"{base}/login", {"token": "alice-secret"})
        assert status == 303
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        assert "alice-secret" not in cookie and "HttpOnly" in headers["Set-Cookie"]
        status, html, _ = await fetch(f"{base}/queues/{Q}", headers={"Cookie": cookie})
        assert status == 200 and "data-uri" in html and "Sign out alice" in html
        forged = "stovepipe_console=alice.0000"
        status, html, _ = await fetch(f"{base}/queues/{Q}", headers={"Cookie": forged})
        assert "data-uri" not in html


async def test_reverse_proxy_header(history: History) -> None:
    async with running_console(history.config({"proxy_user_header": "X-Forwarded-User"})) as base:
        status, _, _ = await fetch(f"{base}/queues/{Q}")
        assert status == 401
        status, html, _ = await fetch(f"{base}/queues/{Q}", headers={"X-Forwarded-User": "bob"})
        assert status == 200 and "data-uri" in html


async def test_revalidate_needs_the_admin_token_and_a_confirmation(history: History) -> None:
    uri = history.uris["fail-closed"]
    async with running_console(history.config({"admin_token_env": "CONSOLE_ADMIN_TOKEN"})) as base:
        query = urllib.parse.urlencode({"queue": Q, "uri": uri})
        status, html, _ = await fetch(f"{base}/commit?{query}")
        assert status == 200 and "Re-validate" in html
        status, form, _ = await fetch(f"{base}/revalidate?{query}")
        assert status == 200 and "Yes, re-validate" in form
        confirm = re.search(r'name="confirm" value="([0-9a-f]+)"', form)
        assert confirm is not None
        # a post without the confirmation (a cross-site form) changes nothing
        status, _, _ = await post(f"{base}/revalidate", {"queue": Q, "uri": uri})
        assert status == 403
        request = (
            await history.stub.GetRequest(
                pb.GetRequestRequest(request_id=history.request_ids["fail-closed"]),
                metadata=(("authorization", f"Bearer {READ_TOKEN}"),),
            )
        ).request
        assert request.attempt == 1
        answer = {"queue": Q, "uri": uri, "confirm": confirm.group(1), "reason": "redeployed"}
        status, said, _ = await post(f"{base}/revalidate", answer)
        assert status == 303, said
        request = (
            await history.stub.GetRequest(
                pb.GetRequestRequest(request_id=history.request_ids["fail-closed"]),
                metadata=(("authorization", f"Bearer {READ_TOKEN}"),),
            )
        ).request
        assert request.attempt == 2 and request.state == types_pb2.REQUEST_STATE_ACCEPTED
        assert "console (anyone): redeployed" in request.reason
        # green is final: the API refuses, the console says so
        green = {"queue": Q, "uri": history.uris["green"]}
        green["confirm"] = re.search(  # type: ignore[union-attr]
            r'name="confirm" value="([0-9a-f]+)"',
            (await fetch(f"{base}/revalidate?{urllib.parse.urlencode(green)}"))[1],
        ).group(1)
        status, html, _ = await post(f"{base}/revalidate", green)
        assert status == 409 and "FAILED_PRECONDITION" in html


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "console.pem", directory / "console.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=console",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


async def test_tls_listener(history: History, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    section = {"tls": {"cert_file": str(cert), "key_file": str(key)}}
    async with running_console(history.config(section)) as base:
        assert base.startswith("https://")
        trusting = ssl.create_default_context(cafile=str(cert))
        status, html, _ = await fetch(f"{base}/queues/{Q}", context=trusting)
        assert status == 200 and "data-uri" in html
        with pytest.raises(urllib.error.URLError):
            await fetch(f"{base}/queues/{Q}", context=ssl.create_default_context())
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            await fetch(base.replace("https://", "http://") + f"/queues/{Q}")


def _console_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stovepipe.cli.main", "console", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("section", "said"),
    [
        (
            {"listen": "0.0.0.0:1", "login_tokens": [{"name": "a", "token_env": "HOME"}]},
            "refusing to accept console login tokens in plaintext",
        ),
        ({"tls": {"cert_file": "/nonexistent.pem", "key_file": "/nonexistent.key"}}, "cannot read"),
        ({"api": {"token_env": "STOVEPIPE_TEST_UNSET_TOKEN"}}, "STOVEPIPE_TEST_UNSET_TOKEN"),
        ({"__api_tokens__": True}, "the console needs a read token of its own"),
    ],
)
def test_a_console_that_cannot_work_exits_2_saying_why(
    tmp_path: Path, section: dict[str, Any], said: str
) -> None:
    config = tmp_path / "stovepipe.yaml"
    import yaml

    data: dict[str, Any] = {"console": section}
    if section.pop("__api_tokens__", False):
        data["api"] = {"tokens": [{"name": "gate", "role": "read", "token_env": "HOME"}]}
    config.write_text(yaml.safe_dump(data))
    done = _console_cli(config)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
