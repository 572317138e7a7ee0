"""analyze and the per-project paths of build, buildsignal, record and reconcile, in-process
on real storage with the extension fakes: redelivery, fail closed per project, coalescing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import pytest

from harness.stages import Pipeline, queue_config
from stovepipe.domain import FactOrigin, RequestState
from stovepipe.extensions.buildrunner.fake import Outcome
from stovepipe.failures import Retryable
from stovepipe.stages import topics
from stovepipe.stages.reconcile import DeadLetterReconciler
from stovepipe.storage import Store
from stovepipe.v1 import topics_pb2, types_pb2

Q = "mono/main"
TARGETS = [
    {"name": f"{p}-test", "command": "true", "paths": [f"{p}/**"]} for p in ("web", "api", "lib")
]
PROJECTS = [
    {"name": "web", "paths": ["web/**"], "targets": ["web-*"], "promotion_ref": "verified-web"},
    {"name": "api", "paths": ["api/**"], "targets": ["api-*", "lib-*"], "weight": 2},
    {"name": "lib", "paths": ["lib/**"], "targets": ["lib-*"]},
]


def _pipe(store: Store, **extra: Any) -> Pipeline:
    return Pipeline(
        store, [queue_config(Q, build={"targets": TARGETS}, projects=PROJECTS, **extra)]
    )


async def _commit(pipe: Pipeline, files: Mapping[str, str | None], title: str) -> tuple[str, str]:
    """Commit and ingest; the fake runner learns what changed since the Queue's last green,
    so an incremental build skips the targets whose paths saw no change."""
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", files, title=title))
    queue = await pipe.store.get_queue(Q)
    if queue is not None and queue.last_green_uri:
        pipe.runner.set_changed_files(queue.last_green_uri, uri, sorted(files))
    rid = (await pipe.ingester.ingest(Q, "poller")).request.id
    return rid, uri


async def _facts(pipe: Pipeline, uri: str) -> dict[str, tuple[float, FactOrigin]]:
    found = {}
    for project in ("", "web", "api", "lib"):
        fact = await pipe.store.get_fact(Q, uri, project)
        if fact is not None:
            found[project] = (fact.degree, fact.origin)
    return found


ROOT = {"web/a": "1", "api/a": "1", "lib/a": "1"}


async def _lose_project_builds(pipe: Pipeline, rid: str) -> None:
    """Run the whole-repository path, then analyze, losing the project-scoped builds."""
    await pipe.drain(lose=frozenset({topics.ANALYZE}))
    await pipe.handlers[topics.ANALYZE](topics_pb2.AnalyzeMessage(request_id=rid, queue=Q))
    await pipe.drain(lose=frozenset({topics.BUILD}))


async def test_every_message_delivered_twice_gives_the_same_project_facts(store: Store) -> None:
    pipe = _pipe(store, inherit_unaffected=False)
    _, first = await _commit(pipe, ROOT, "root")
    await pipe.drain(twice=True)
    rid, uri = await _commit(pipe, {"api/a": "2"}, "api only")
    await pipe.drain(twice=True)
    assert await _facts(pipe, uri) == {
        "": (0.0, FactOrigin.BUILD),
        "web": (0.0, FactOrigin.BUILD),
        "api": (0.0, FactOrigin.BUILD),
        "lib": (0.0, FactOrigin.BUILD),
    }
    # one project build each for web and lib, none for api (the whole build answered)
    builds = {p: await store.latest_project_build(Q, rid, p) for p in ("web", "api", "lib")}
    assert {p for p, b in builds.items() if b is not None} == {"web", "lib"}
    assert len(pipe.runner.running()) == 0
    bookmark = await store.get_project_bookmark(Q, "web")
    assert bookmark is not None and bookmark.last_green_uri == uri
    assert pipe.repo().head("verified-web") == uri.rsplit("@", 1)[-1]
    assert first != uri


async def test_a_dead_letter_on_a_project_path_fails_only_that_project_closed(
    store: Store,
) -> None:
    pipe = _pipe(store, inherit_unaffected=False)
    await _commit(pipe, ROOT, "root")
    await pipe.drain()
    rid, uri = await _commit(pipe, {"api/a": "2"}, "api only")
    await _lose_project_builds(pipe, rid)  # web's and lib's builds never start
    assert await pipe.store.get_fact(Q, uri, "") is None  # not every project answered
    reconciler = DeadLetterReconciler(store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)
    request = await store.get_request(rid)
    # The whole build ended, but the Request stays in flight until every project answers.
    assert request is not None and request.state is RequestState.ANALYZING
    for project in ("web", "lib"):
        await reconciler.reconcile(
            topics_pb2.BuildMessage(
                request_id=rid,
                queue=Q,
                scope=types_pb2.Scope(project=project),
                request_attempt=request.attempt,
            ),
            "runner unavailable",
        )
    await pipe.drain()
    facts = await _facts(pipe, uri)
    assert facts["web"] == (1.0, FactOrigin.FAIL_CLOSED)
    assert facts["lib"] == (1.0, FactOrigin.FAIL_CLOSED)
    assert facts["api"] == (0.0, FactOrigin.BUILD)
    assert facts[""][0] == pytest.approx(2 / 4)
    assert facts[""][1] is FactOrigin.FAIL_CLOSED
    # a broken project keeps its bookmark where it was
    web = await store.get_project_bookmark(Q, "web")
    assert web is not None and web.last_green_uri != uri
    # every project has its fact: the Request ends, failed (two projects broken)
    settled = await store.get_request(rid)
    assert settled is not None and settled.state is RequestState.FAILED


async def test_a_dead_lettered_analyze_fails_every_project_without_a_fact_closed(
    store: Store,
) -> None:
    pipe = _pipe(store)
    rid, uri = await _commit(pipe, ROOT, "root")
    await pipe.drain(lose=frozenset({topics.ANALYZE}))
    request = await store.get_request(rid)
    assert request is not None
    reconciler = DeadLetterReconciler(store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)
    await reconciler.reconcile(
        topics_pb2.AnalyzeMessage(request_id=rid, queue=Q, request_attempt=request.attempt),
        "mapper down",
    )
    await pipe.drain()
    assert await _facts(pipe, uri) == {
        "": (1.0, FactOrigin.FAIL_CLOSED),
        "web": (1.0, FactOrigin.FAIL_CLOSED),
        "api": (1.0, FactOrigin.FAIL_CLOSED),
        "lib": (1.0, FactOrigin.FAIL_CLOSED),
    }


async def test_the_mapper_down_is_retried_and_nothing_is_guessed(store: Store) -> None:
    pipe = _pipe(store)
    rid, uri = await _commit(pipe, ROOT, "root")
    pipe.extensions.mapper.fail_with = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down", None
    )
    with pytest.raises((Retryable, grpc.aio.AioRpcError)):
        await pipe.drain()
    assert await _facts(pipe, uri) == {}
    pipe.extensions.mapper.fail_with = None
    await pipe.handlers[topics.ANALYZE](topics_pb2.AnalyzeMessage(request_id=rid, queue=Q))
    await pipe.drain()
    assert set(await _facts(pipe, uri)) == {"", "web", "api", "lib"}


async def test_an_errored_whole_build_gets_project_builds_and_never_a_guess(
    store: Store,
) -> None:
    pipe = _pipe(store)
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", ROOT, title="root"))
    pipe.runner.script(uri, Outcome.errored("checkout lost"))
    rid = (await pipe.ingester.ingest(Q, "poller")).request.id
    await _lose_project_builds(pipe, rid)
    request = await store.get_request(rid)
    assert request is not None and request.state is RequestState.ANALYZING
    # No target ran and nothing to inherit from: no project fact, no whole verdict.
    assert await _facts(pipe, uri) == {}


async def test_a_superseded_head_gets_no_project_facts(store: Store) -> None:
    pipe = _pipe(store)
    await _commit(pipe, ROOT, "root")
    await pipe.drain()
    older, older_uri = await _commit(pipe, {"api/a": "2"}, "two")
    newer, newer_uri = await _commit(pipe, {"api/a": "3"}, "three")
    await pipe.drain()
    assert (await store.get_request(older)).state is RequestState.SUPERSEDED  # type: ignore[union-attr]
    assert await _facts(pipe, older_uri) == {}
    assert set(await _facts(pipe, newer_uri)) == {"", "web", "api", "lib"}
    assert newer != older


async def test_the_sweeper_promotes_a_projects_ref_left_behind_its_bookmark(
    store: Store,
) -> None:
    """The project's bookmark moved, its Promote failed and the message was not retried:
    an idle pass promotes that project's ref once, and never one already in place."""
    from datetime import timedelta

    from stovepipe.stages.sweep import StaleRequestSweeper

    pipe = _pipe(store, inherit_unaffected=False)
    real_promote = pipe.sc.promote
    refused: list[str] = []

    async def promote(source: Any, uri: str, ref: str, **kw: Any) -> Any:
        if ref == "verified-web" and not refused:
            refused.append(uri)
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "down", None
            )
        return await real_promote(source, uri, ref, **kw)

    pipe.sc.promote = promote  # type: ignore[method-assign,assignment]
    _, uri = await _commit(pipe, ROOT, "root")
    with pytest.raises(grpc.aio.AioRpcError):
        await pipe.drain()
    await pipe.drain()  # the rest; the failed record message is gone
    bookmark = await store.get_project_bookmark(Q, "web")
    assert bookmark is not None and bookmark.last_green_uri == uri == refused[0]
    assert pipe.repo().head("verified-web") is None

    sweeper = StaleRequestSweeper(pipe.store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)
    await sweeper.sweep_once(timedelta(minutes=5))
    assert pipe.repo().head("verified-web") is None  # not idle yet: record may be under way
    calls = len(pipe.sc.calls_to("promote"))
    for _ in range(3):
        pipe.clock.now += timedelta(minutes=10)
        await sweeper.sweep_once(timedelta(minutes=5))
    assert pipe.repo().head("verified-web") == uri.rsplit("@", 1)[-1]
    assert len(pipe.sc.calls_to("promote")) == calls + 1  # once, then in place
