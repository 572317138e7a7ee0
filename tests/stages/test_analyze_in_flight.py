"""Phase 2 Request lifecycle, in-process on real storage with the extension fakes: a
Request stays ``analyzing`` (in flight) until every project has its fact, the sweeper
re-drives one that stopped, and re-validation per project (``revalidate --project``)
or of the whole commit keeps one fact per project and attempt."""

from __future__ import annotations

from datetime import timedelta

import pytest

from harness.stages import Pipeline, queue_config
from stovepipe.domain import FactOrigin, InvalidInput, Refused, RequestState
from stovepipe.extensions.buildrunner.fake import Outcome
from stovepipe.stages import topics
from stovepipe.stages.reconcile import DeadLetterReconciler
from stovepipe.stages.sweep import StaleRequestSweeper
from stovepipe.storage import Store
from stovepipe.v1 import topics_pb2, types_pb2

Q = "mono/main"
TARGETS = [
    {"name": f"{p}-test", "command": "true", "paths": [f"{p}/**"]} for p in ("web", "api", "lib")
]
PROJECTS = [
    {"name": "web", "paths": ["web/**"], "targets": ["web-*"]},
    {"name": "api", "paths": ["api/**"], "targets": ["api-*", "lib-*"], "weight": 2},
    {"name": "lib", "paths": ["lib/**"], "targets": ["lib-*"]},
]
ROOT = {"web/a": "1", "api/a": "1", "lib/a": "1"}
SCOPES = ("", "web", "api", "lib")


def _pipe(store: Store) -> Pipeline:
    return Pipeline(
        store,
        [queue_config(Q, build={"targets": TARGETS}, projects=PROJECTS, inherit_unaffected=False)],
    )


async def _commit(pipe: Pipeline, files: dict[str, str], title: str) -> tuple[str, str]:
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", files, title=title))
    queue = await pipe.store.get_queue(Q)
    if queue is not None and queue.last_green_uri:
        pipe.runner.set_changed_files(queue.last_green_uri, uri, sorted(files))
    return (await pipe.ingester.ingest(Q, "poller")).request.id, uri


async def _facts(pipe: Pipeline, uri: str) -> dict[str, tuple[float, FactOrigin, int]]:
    found = {}
    for scope in SCOPES:
        fact = await pipe.store.get_fact(Q, uri, scope)
        if fact is not None:
            found[scope] = (fact.degree, fact.origin, fact.attempt)
    return found


async def _state(pipe: Pipeline, rid: str) -> tuple[RequestState, int]:
    request = await pipe.store.get_request(rid)
    assert request is not None
    return request.state, request.attempt


async def _analyzing_without_project_builds(pipe: Pipeline) -> tuple[str, str]:
    """A green root, then an ``api``-only commit whose web and lib builds are lost."""
    await _commit(pipe, ROOT, "root")
    await pipe.drain()
    rid, uri = await _commit(pipe, {"api/a": "2"}, "api only")
    await pipe.drain(lose=frozenset({topics.ANALYZE}))
    await pipe.handlers[topics.ANALYZE](topics_pb2.AnalyzeMessage(request_id=rid, queue=Q))
    await pipe.drain(lose=frozenset({topics.BUILD}))
    return rid, uri


async def _fail_closed(pipe: Pipeline, rid: str, *projects: str) -> None:
    reconciler = DeadLetterReconciler(
        pipe.store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock
    )
    _, attempt = await _state(pipe, rid)
    for project in projects:
        await reconciler.reconcile(
            topics_pb2.BuildMessage(
                request_id=rid,
                queue=Q,
                scope=types_pb2.Scope(project=project),
                request_attempt=attempt,
            ),
            "runner unavailable",
        )
    await pipe.drain()


def _whole_builds(pipe: Pipeline) -> int:
    return sum(1 for t in pipe.runner.triggers if not t.project)


async def test_a_request_stays_in_flight_until_every_project_has_its_fact(store: Store) -> None:
    pipe = _pipe(store)
    rid, uri = await _analyzing_without_project_builds(pipe)
    # The whole build ended and its slot is free, but web and lib have no fact yet.
    assert await _state(pipe, rid) == (RequestState.ANALYZING, 1)
    assert await store.count_requests_by_state(Q) == {RequestState.ANALYZING: 1}
    assert set(await _facts(pipe, uri)) == {"api"}
    queue = await store.get_queue(Q)
    assert queue is not None and not queue.holds_slot(rid)

    # Nothing moves it any more: the sweeper re-drives it, and analyze re-sends the builds.
    sweeper = StaleRequestSweeper(store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)
    assert await sweeper.sweep_once(pipe.stale_after) == []  # not stale yet
    pipe.clock.now += pipe.stale_after + timedelta(seconds=1)
    assert await sweeper.sweep_once(pipe.stale_after) == [rid]
    await pipe.drain()
    assert await _state(pipe, rid) == (RequestState.SUCCEEDED, 1)
    assert await _facts(pipe, uri) == dict.fromkeys(SCOPES, (0.0, FactOrigin.BUILD, 1))
    assert await store.count_requests_by_state(Q) == {}


async def test_a_lost_whole_repository_record_while_analyzing_fails_only_missing_projects(
    store: Store,
) -> None:
    pipe = _pipe(store)
    rid, uri = await _analyzing_without_project_builds(pipe)
    reconciler = DeadLetterReconciler(store, pipe.config, pipe.extensions, pipe.outbox, pipe.clock)
    await reconciler.reconcile(
        topics_pb2.RecordMessage(request_id=rid, queue=Q, request_attempt=1), "record poisoned"
    )
    await pipe.drain()
    facts = await _facts(pipe, uri)
    assert facts["api"] == (0.0, FactOrigin.BUILD, 1)  # its own verdict stands
    assert facts["web"] == facts["lib"] == (1.0, FactOrigin.FAIL_CLOSED, 1)
    degree, origin = facts[""][:2]
    assert degree == pytest.approx(2 / 4) and origin is FactOrigin.FAIL_CLOSED
    assert await _state(pipe, rid) == (RequestState.FAILED, 1)


async def test_revalidate_one_project_rebuilds_only_it_and_keeps_the_others(
    store: Store,
) -> None:
    pipe = _pipe(store)
    rid, uri = await _analyzing_without_project_builds(pipe)
    await _fail_closed(pipe, rid, "web", "lib")
    assert await _state(pipe, rid) == (RequestState.FAILED, 1)
    whole_builds = _whole_builds(pipe)

    with pytest.raises(InvalidInput, match="configured projects: web, api, lib"):
        await pipe.revalidator.revalidate(Q, uri, project="nope")
    with pytest.raises(Refused, match="green in project api"):
        await pipe.revalidator.revalidate(Q, uri, project="api")

    started = await pipe.revalidator.revalidate(Q, uri, project="web", reason="runner back")
    assert not started.already_in_flight
    assert (started.request.state, started.request.attempt) == (RequestState.ANALYZING, 2)
    again = await pipe.revalidator.revalidate(Q, uri, project="web")
    assert again.already_in_flight and again.request.attempt == 2
    await pipe.drain()

    facts = await _facts(pipe, uri)
    assert facts["web"] == (0.0, FactOrigin.BUILD, 2)  # its own project build
    assert facts["lib"] == (1.0, FactOrigin.FAIL_CLOSED, 2)  # kept, not rebuilt
    assert facts["api"] == (0.0, FactOrigin.BUILD, 1)  # green is final: attempt 1 answers
    kept = await store.get_fact_of_attempt(Q, uri, "api", 2)
    assert kept is not None and kept.green and kept.origin is FactOrigin.BUILD
    degree, origin, attempt = facts[""]
    assert degree == pytest.approx(1 / 4) and (origin, attempt) == (FactOrigin.FAIL_CLOSED, 2)
    assert await _state(pipe, rid) == (RequestState.FAILED, 2)
    assert _whole_builds(pipe) == whole_builds  # no whole-repository build again
    web_build = await store.latest_project_build(Q, rid, "web")
    assert web_build is not None and web_build.status.terminal
    web = await store.get_project_bookmark(Q, "web")
    assert web is not None and web.last_green_uri == uri  # green now: the bookmark moves

    await pipe.revalidator.revalidate(Q, uri, project="lib")
    await pipe.drain()
    assert await _facts(pipe, uri) == {
        "": (0.0, FactOrigin.BUILD, 3),
        "web": (0.0, FactOrigin.BUILD, 2),  # green is final: the earliest green answers
        "api": (0.0, FactOrigin.BUILD, 1),
        "lib": (0.0, FactOrigin.BUILD, 3),
    }
    assert await _state(pipe, rid) == (RequestState.SUCCEEDED, 3)
    queue = await store.get_queue(Q)
    assert queue is not None and queue.last_green_uri == uri
    with pytest.raises(Refused, match="green in every project"):
        await pipe.revalidator.revalidate(Q, uri, project="lib")


async def test_revalidate_a_project_broken_by_a_real_build_needs_flaky(store: Store) -> None:
    pipe = _pipe(store)
    await _commit(pipe, ROOT, "root")
    await pipe.drain()
    uri = pipe.sc.uri(pipe.source(), pipe.repo().advance("main", {"api/a": "2"}, title="x"))
    queue = await store.get_queue(Q)
    assert queue is not None and queue.last_green_uri
    pipe.runner.set_changed_files(queue.last_green_uri, uri, ["api/a"])
    pipe.runner.script(uri, Outcome.fail("api-test"))
    rid = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain()
    assert await _state(pipe, rid) == (RequestState.FAILED, 1)
    assert (await _facts(pipe, uri))["api"] == (1.0, FactOrigin.BUILD, 1)
    with pytest.raises(Refused, match="--flaky"):
        await pipe.revalidator.revalidate(Q, uri, project="api")

    # The whole commit re-validated as a flake: a full build, then every project again.
    pipe.runner.script(uri, Outcome.succeed())
    await pipe.revalidator.revalidate(Q, uri, flaky=True)
    await pipe.drain()
    facts = await _facts(pipe, uri)
    assert facts[""] == (0.0, FactOrigin.BUILD, 2)
    assert facts["api"] == (0.0, FactOrigin.BUILD, 2)
    for project in ("web", "lib"):  # green at attempt 1 already; attempt 2 agrees
        assert facts[project] == (0.0, FactOrigin.BUILD, 1)
        again = await store.get_fact_of_attempt(Q, uri, project, 2)
        assert again is not None and again.green
    assert await _state(pipe, rid) == (RequestState.SUCCEEDED, 2)


def _inheriting(store: Store) -> Pipeline:
    return Pipeline(store, [queue_config(Q, build={"targets": TARGETS}, projects=PROJECTS)])


async def _bookmarks(pipe: Pipeline) -> dict[str, str]:
    found = {}
    for project in ("web", "api", "lib"):
        bookmark = await pipe.store.get_project_bookmark(Q, project)
        found[project] = (bookmark.last_green_request_id or "") if bookmark else ""
    return found


def _rewrite_head(pipe: Pipeline) -> str:
    """Force-push a commit that replaces the head (same parents, ``api/a`` changed); its URI."""
    repo = pipe.repo()
    head = repo.head("main")
    assert head is not None
    rewritten = repo.commit({"api/a": "2b"}, parents=list(repo.get(head).parents), title="rw")
    repo.force_push("main", rewritten)
    return pipe.sc.uri(pipe.source(), rewritten)


async def test_a_history_rewrite_builds_in_full_and_inherits_nothing(store: Store) -> None:
    pipe = _inheriting(store)
    root, _ = await _commit(pipe, ROOT, "root")
    await pipe.drain()
    ahead, ahead_uri = await _commit(pipe, {"api/a": "2"}, "api only")
    await pipe.drain()
    facts = await _facts(pipe, ahead_uri)
    assert facts["web"][1] is FactOrigin.INHERITED  # unaffected since root
    assert await _bookmarks(pipe) == {"web": ahead, "api": ahead, "lib": ahead}

    # force push: the bookmarked commit is no longer an ancestor of the new head
    uri = _rewrite_head(pipe)
    pipe.runner.script(uri, Outcome.fail("web-test"))
    rid = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain()

    request = await store.get_request(rid)
    assert request is not None and request.build_strategy is not None
    assert (request.state, request.build_strategy.value) == (RequestState.FAILED, "full")
    facts = await _facts(pipe, uri)
    assert facts["web"] == (1.0, FactOrigin.BUILD, 1)
    assert facts["api"] == facts["lib"] == (0.0, FactOrigin.BUILD, 1)  # answered, not inherited
    assert facts[""][0] == pytest.approx(1 / 4)
    # forward only, by ingest order: green projects move to the rewrite, web stays
    assert await _bookmarks(pipe) == {"web": ahead, "api": rid, "lib": rid}
    assert root != ahead


async def test_a_project_never_inherits_from_a_commit_a_rewrite_dropped(store: Store) -> None:
    """Every project is green at a commit that a force push then drops; the rewrite's
    whole build errors, so no target answers. ``web`` is unaffected by the diff, but its
    last green is no longer an ancestor: it gets a build of its own, never that verdict."""
    pipe = _inheriting(store)
    await _commit(pipe, ROOT, "base")
    await pipe.drain()
    dropped, _ = await _commit(pipe, {"lib/a": "2"}, "dropped by the rewrite")
    await pipe.drain()
    assert await _bookmarks(pipe) == {"web": dropped, "api": dropped, "lib": dropped}

    uri = _rewrite_head(pipe)
    pipe.runner.script(uri, Outcome.errored("checkout lost"))
    rid = (await pipe.ingester.ingest(Q, "poller")).request.id
    await pipe.drain(lose=frozenset({topics.ANALYZE}))
    await pipe.handlers[topics.ANALYZE](topics_pb2.AnalyzeMessage(request_id=rid, queue=Q))
    await pipe.drain(lose=frozenset({topics.BUILD}))

    assert await _facts(pipe, uri) == {}  # nothing inherited, nothing guessed
    assert await _state(pipe, rid) == (RequestState.ANALYZING, 1)  # waits for its builds


async def test_coalesced_heads_get_no_project_facts_and_bookmarks_only_move_forward(
    store: Store,
) -> None:
    pipe = _inheriting(store)
    await _commit(pipe, ROOT, "root")
    await pipe.drain()
    heads = [await _commit(pipe, {"api/a": str(i)}, f"api {i}") for i in range(2, 6)]
    await pipe.drain()
    states = [(await _state(pipe, rid))[0] for rid, _ in heads]
    assert states[-1] is RequestState.SUCCEEDED
    assert set(states[:-1]) == {RequestState.SUPERSEDED}
    for _, uri in heads[:-1]:
        assert await _facts(pipe, uri) == {}
    newest, newest_uri = heads[-1]
    assert set(await _facts(pipe, newest_uri)) == set(SCOPES)
    assert await _bookmarks(pipe) == {"web": newest, "api": newest, "lib": newest}
    # an older Request's late record cannot move a project's bookmark back
    for project in ("web", "api", "lib"):
        await pipe.handlers[topics.RECORD](
            topics_pb2.RecordMessage(
                request_id=heads[0][0], queue=Q, scope=types_pb2.Scope(project=project)
            )
        )
    await pipe.drain()
    assert await _bookmarks(pipe) == {"web": newest, "api": newest, "lib": newest}
