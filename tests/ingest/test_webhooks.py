"""The push-webhook receiver over real HTTP, on the real broker, PostgreSQL and git."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from harness.ingress import Ingress, commit, ingress_stack, make_repo, queue
from harness.postgres import MigratedTemplate
from harness.push_payloads import delivery
from stovepipe.config.webhooks import CodeHost
from stovepipe.runtime.sample_repo import SampleRepo
from stovepipe.webhooks.signatures import sign

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

SECRETS: dict[CodeHost, str] = {
    "github": "gh-secret-8c1d",
    "gitlab": "gl-secret-77aa",
    "gitea": "gt-secret-3f02",
}


Tools = tuple[Ingress, str, SampleRepo]


async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.json()


@pytest.fixture(scope="module")
async def tools(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, pg_template: MigratedTemplate
) -> AsyncIterator[Tools]:
    """One stack for the module: every test adds its own commits and compares counts."""
    tmp = tmp_path_factory.mktemp("webhooks")
    repo = make_repo(tmp / "mirrors" / "acme" / "tools")
    qs = [queue("tools/main", repo.path)]
    database = await pg_template.create()
    try:
        async with (
            ingress_stack(tmp, kafka_bootstrap, database, qs) as live,
            live.webhooks(SECRETS) as (url, _),
        ):
            yield live, url, repo
    finally:
        await pg_template.drop(database)


async def _count(live: Ingress) -> int:
    return len(await live.requests_of("tools/main"))


@pytest.mark.parametrize("host", ["github", "gitlab", "gitea"])
async def test_a_signed_push_ingests_the_resolved_head(tools: Tools, host: CodeHost) -> None:
    live, url, repo = tools
    sha = commit(repo, green=True)
    hint = "f" * 40  # the payload's sha is a hint: the head is resolved through SourceControl
    body, headers = delivery(host, SECRETS[host], "acme", "tools", hint)
    status, answer = await _post(f"{url}/hooks/{host}", body, headers)
    assert status == 202 and answer["status"] == "ingested"
    (request,) = [r for r in await live.requests_of("tools/main") if r.uri.endswith(sha)]
    assert answer["requests"] == {"tools/main": request.id}
    assert request.trigger == "push"
    assert request.uri.endswith(sha)
    details = dict(request.trigger_details)
    assert details["host"] == host and details["sha_hint"] == hint and details["delivery"]
    done = await live.wait_terminal(request.id)
    assert done.trigger == "push" and dict(done.trigger_details)["host"] == host


async def test_forgejo_headers_are_accepted_at_the_gitea_endpoint(
    tools: Tools,
) -> None:
    _, url, repo = tools
    sha = commit(repo, green=True)
    body, headers = delivery("gitea", None, "acme", "tools", sha)
    headers = {
        "X-Forgejo-Event": "push",
        "X-Forgejo-Delivery": headers["X-Gitea-Delivery"],
        "X-Forgejo-Signature": sign("gitea", SECRETS["gitea"], body)["X-Gitea-Signature"],
    }
    status, answer = await _post(f"{url}/hooks/gitea", body, headers)
    assert (status, answer["status"]) == (202, "ingested")


@pytest.mark.parametrize("host", ["github", "gitlab", "gitea"])
async def test_unsigned_or_badly_signed_deliveries_are_refused_and_logged(
    tools: Tools,
    host: CodeHost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    live, url, repo = tools
    sha = repo.git("rev-parse", "HEAD")
    unsigned = delivery(host, None, "acme", "tools", sha)
    wrong = delivery(host, "not-the-secret", "acme", "tools", sha)
    body, headers = delivery(host, SECRETS[host], "acme", "tools", sha)
    tampered = (body.replace(b"acme/tools", b"acme/toolz"), headers)
    before = await _count(live)
    with caplog.at_level(logging.WARNING, logger="stovepipe.webhooks.receiver"):
        for payload, signed_headers in (unsigned, wrong, tampered):
            if host == "gitlab" and payload is tampered[0]:
                continue  # GitLab sends a token, not a signature of the body
            status, answer = await _post(f"{url}/hooks/{host}", payload, signed_headers)
            assert (status, answer["status"]) == (401, "error")
    refusals = [r for r in caplog.records if "bad signature" in r.getMessage()]
    assert refusals and all(host in r.getMessage() for r in refusals)
    assert not any("not-the-secret" in r.getMessage() for r in caplog.records)
    assert not any(SECRETS[host] in r.getMessage() for r in caplog.records)
    assert await _count(live) == before


async def test_unknown_repositories_other_events_and_unknown_hosts(
    tools: Tools,
) -> None:
    live, url, repo = tools
    sha = commit(repo, green=True)
    before = await _count(live)
    for body, headers in (
        delivery("github", SECRETS["github"], "acme", "unknown", sha),
        delivery("github", SECRETS["github"], "acme", "tools", sha, ref="refs/heads/other"),
        delivery("github", SECRETS["github"], "acme", "tools", sha, ref="refs/tags/v1"),
        delivery("github", SECRETS["github"], "acme", "tools", "0" * 40),  # branch deleted
        delivery("github", SECRETS["github"], "acme", "tools", sha, event="ping"),
        delivery("gitlab", SECRETS["gitlab"], "acme", "tools", sha, event="Tag Push Hook"),
    ):
        host = "gitlab" if "X-Gitlab-Token" in headers else "github"
        status, answer = await _post(f"{url}/hooks/{host}", body, headers)
        assert (status, answer["status"]) == (202, "ignored")
    body, headers = delivery("github", SECRETS["github"], "acme", "tools", sha)
    status, _ = await _post(f"{url}/hooks/bitbucket", body, headers)
    assert status == 404
    malformed = b"{not json"
    status, answer = await _post(
        f"{url}/hooks/github",
        malformed,
        {"X-GitHub-Event": "push", **sign("github", SECRETS["github"], malformed)},
    )
    assert status == 400
    assert await _count(live) == before


async def test_an_oversized_body_is_refused_with_413(
    tools: Tools,
) -> None:
    live, url, _ = tools
    before = await _count(live)
    body = b'{"ref": "refs/heads/main", "pad": "' + b"x" * (128 * 1024) + b'"}'
    headers = {"X-GitHub-Event": "push", **sign("github", SECRETS["github"], body)}
    status, _ = await _post(f"{url}/hooks/github", body, headers)
    assert status == 413
    assert await _count(live) == before


async def test_fifty_pushes_of_one_head_make_one_request(
    tools: Tools,
) -> None:
    live, url, repo = tools
    sha = commit(repo, green=True)
    deliveries = [delivery("github", SECRETS["github"], "acme", "tools", sha) for _ in range(50)]
    answers = await asyncio.gather(
        *(_post(f"{url}/hooks/github", body, headers) for body, headers in deliveries)
    )
    assert {status for status, _ in answers} == {202}
    ids = {str(answer["requests"]) for _, answer in answers}
    assert len(ids) == 1
    requests = [r for r in await live.requests_of("tools/main") if r.uri.endswith(sha)]
    assert len(requests) == 1
