"""Per-project storage (migration 0009_projects), on both backends: bookmarks that only
move forward under racing writers, inherited facts that stay immutable, and the
lookups analyze and record rely on."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from stovepipe.domain import Build, BuildStatus, FactOrigin, ValidationFact
from stovepipe.stages import project_ops
from stovepipe.storage import Store, VersionMismatch

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
Q = "mono/main"


def clock() -> datetime:
    return NOW


def inherited(uri: str, project: str = "web") -> ValidationFact:
    return ValidationFact(
        queue=Q,
        uri=uri,
        project=project,
        degree=0.0,
        request_id="request/mono/main/2",
        origin=FactOrigin.INHERITED,
        created_at=NOW,
        reason="unaffected since git:a",
        inherited_from_uri="git:a",
    )


async def test_a_bookmark_row_is_created_once_however_many_race(store: Store) -> None:
    rows = await asyncio.gather(*(store.ensure_project_bookmark(Q, "web") for _ in range(20)))
    assert {(r.version, r.last_green_uri) for r in rows} == {(1, None)}
    assert [b.project for b in await store.list_project_bookmarks(Q)] == ["web"]


async def test_a_stale_write_of_a_bookmark_is_refused(store: Store) -> None:
    first = await store.ensure_project_bookmark(Q, "web")
    moved = await store.update_project_bookmark(
        first,
        first.evolve(now=NOW, last_green_uri="git:b", last_green_request_id="request/mono/main/2"),
    )
    with pytest.raises(VersionMismatch):
        await store.update_project_bookmark(first, first.evolve(now=NOW, last_green_uri="git:c"))
    assert await store.get_project_bookmark(Q, "web") == moved


async def test_racing_advances_leave_the_newest_request_and_never_go_back(store: Store) -> None:
    numbers = list(range(1, 31))
    random.Random(7).shuffle(numbers)
    seen: list[int] = []

    async def advance(n: int) -> None:
        bookmark = await project_ops.advance_bookmark(
            store, Q, "api", f"request/mono/main/{n}", f"git:{n}", clock
        )
        assert bookmark.last_green_request_id is not None
        seen.append(int(bookmark.last_green_request_id.rsplit("/", 1)[1]))

    await asyncio.gather(*(advance(n) for n in numbers))
    final = await store.get_project_bookmark(Q, "api")
    assert final is not None and final.last_green_request_id == "request/mono/main/30"
    assert final.last_green_uri == "git:30"
    # An older green arriving late changes nothing.
    await project_ops.advance_bookmark(store, Q, "api", "request/mono/main/3", "git:3", clock)
    assert await store.get_project_bookmark(Q, "api") == final
    # Other projects' bookmarks are their own.
    assert await store.get_project_bookmark(Q, "web") is None


async def test_promotion_is_noted_only_for_the_current_bookmark(store: Store) -> None:
    await project_ops.advance_bookmark(store, Q, "web", "request/mono/main/5", "git:5", clock)
    await project_ops.note_promoted(store, Q, "web", "git:4", clock)
    assert (await store.ensure_project_bookmark(Q, "web")).promoted_uri is None
    await project_ops.note_promoted(store, Q, "web", "git:5", clock)
    assert (await store.ensure_project_bookmark(Q, "web")).promoted_uri == "git:5"


async def test_an_inherited_fact_keeps_its_source_and_is_immutable(store: Store) -> None:
    fact = await store.create_fact(inherited("git:b"))
    assert await store.get_fact(Q, "git:b", "web") == fact
    with pytest.raises(DBAPIError, match="immutable"):
        async with store.engine.begin() as conn:
            await conn.execute(text("UPDATE validation_facts SET inherited_from_uri = 'git:z'"))
    stored = await store.get_fact(Q, "git:b", "web")
    assert stored is not None and stored.inherited_from_uri == "git:a"


async def test_project_facts_of_a_commit_leave_out_the_whole_repository(store: Store) -> None:
    await store.create_fact(inherited("git:b", "web"))
    await store.create_fact(inherited("git:b", "lib"))
    await store.create_fact(dataclasses.replace(inherited("git:b", ""), origin=FactOrigin.BUILD))
    await store.create_fact(inherited("git:c", "api"))
    assert [f.project for f in await store.list_project_facts(Q, "git:b")] == ["lib", "web"]


async def test_the_latest_project_build_of_a_request_is_found(store: Store) -> None:
    def build(build_id: str, project: str, minutes: int) -> Build:
        at = NOW + timedelta(minutes=minutes)
        return Build(
            queue=Q,
            build_id=build_id,
            request_id="request/mono/main/2",
            project=project,
            status=BuildStatus.SUCCEEDED,
            version=1,
            created_at=at,
            updated_at=at,
        )

    for b in (build("b-whole", "", 0), build("b-web-1", "web", 1), build("b-web-2", "web", 2)):
        await store.create_build(b)
    found = await store.latest_project_build(Q, "request/mono/main/2", "web")
    assert found is not None and found.build_id == "b-web-2"
    assert await store.latest_project_build(Q, "request/mono/main/2", "api") is None
