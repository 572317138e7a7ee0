"""The SourceControl contract as a pytest suite any implementation runs against itself.

Stovepipe's core holds nothing but a ``SourceControl``: a server that passes
this suite can serve Queues. To run it against your server, subclass
:class:`SourceControlContract` in a test module and give it a ``harness``
fixture (in the class or a conftest) that returns a :class:`Harness`: the
client under test (usually ``SourceControlClient`` over a channel to your
server, see :func:`stovepipe.testing.contracts.source_control_client`) plus
the means to change history in the backend it reads (commit, branch, force
push, garbage-collect, delete the repository)::

    class TestMyServer(SourceControlContract):
        @pytest_asyncio.fixture
        async def harness(self, my_server: str) -> AsyncIterator[Harness]:
            async with source_control_client(my_server) as client:
                yield MyBackendHarness(client)

The tests only speak the harness's vocabulary and never look inside a URI, so
each asserts the same behaviour of every implementation. Async tests need
pytest-asyncio (``pip install 'stovepipe[testing]'``); they are marked, so with
``pytest_asyncio.fixture`` for the harness its strict mode works as well as auto mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import grpc
import pytest
import pytest_asyncio

from stovepipe.extensions.sourcecontrol import Ancestry, QueueSource, SourceControl

__all__ = [
    "PROMOTION_REF",
    "QUEUE",
    "Harness",
    "History",
    "SourceControlContract",
    "build_history",
]

QUEUE = "demo/main"
PROMOTION_REF = "verified-main"

CALC_GOOD = "def add(a, b):\n    return a + b\n"
CALC_BROKEN = "def add(a, b):\n    return a - b\n"
TEST_CALC = "from calc import add\n\nassert add(2, 3) == 5\n"


class Harness(Protocol):
    """One repository history, changed by the test and answered for by ``sc``.

    A method the backend cannot do (garbage collection on a hosted service,
    say) may call ``pytest.skip`` with the reason.
    """

    sc: SourceControl
    """The implementation under test."""
    source: QueueSource
    """A Queue following ``main`` of the repository the harness changes."""
    foreign: QueueSource
    """Another repository that exists and has history on ``main``."""
    missing: QueueSource
    """A repository that does not exist."""
    author: str
    """``Name <email>``: what ``describe_commit`` must say of the harness's commits."""

    def on(self, branch: str) -> QueueSource:
        """The source of a Queue that follows ``branch`` of the same repository."""
        ...

    async def commit(self, branch: str, files: Mapping[str, str | None], title: str) -> str:
        """Commit on an existing branch (or on ``main`` from nothing); the revision.

        ``None`` deletes a path.
        """
        ...

    async def branch(self, name: str, revision: str) -> None:
        """Create or move branch ``name`` to ``revision``, as someone else's push would."""
        ...

    async def force_push(self, branch: str, revision: str) -> None: ...

    async def collect_garbage(self) -> None:
        """Forget unreachable commits everywhere the implementation could still find them."""
        ...

    async def revision(self, branch: str) -> str | None:
        """Where ``branch`` points in the authoritative repository."""
        ...

    async def remove_repository(self) -> None:
        """Delete the authoritative repository (a mirror of it may stay behind)."""
        ...


@dataclass(frozen=True)
class History:
    """Green, broken, fixed on ``main``; a ``release`` branch off the green commit."""

    green: str
    broken: str
    fix: str
    release: str


async def build_history(harness: Harness) -> History:
    green = await harness.commit(
        "main",
        {"src/calc.py": CALC_GOOD, "tests/test_calc.py": TEST_CALC, "README.md": "# calc\n"},
        "add calculator",
    )
    broken = await harness.commit("main", {"src/calc.py": CALC_BROKEN}, "break add()")
    fix = await harness.commit(
        "main", {"src/calc.py": CALC_GOOD, "docs/notes.md": "fixed\n"}, "fix add()"
    )
    await harness.branch("release", green)
    release = await harness.commit("release", {"CHANGELOG.md": "1.0\n"}, "release 1.0")
    return History(green=green, broken=broken, fix=fix, release=release)


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def uris(harness: Harness, source: QueueSource | None = None) -> list[str]:
    """Every commit of the branch, oldest first, by URI."""
    source = source or harness.source
    return await harness.sc.list_commits(source, "", await harness.sc.resolve_head(source))


async def revision(harness: Harness, uri: str) -> str:
    return (await harness.sc.describe_commit(harness.source, uri)).revision


async def rewrite_main(harness: Harness, history: History) -> str:
    """Force-push main back to the green commit plus a new fix; the new head's URI."""
    await harness.force_push("main", history.green)
    await harness.commit("main", {"src/calc.py": "def add(a, b):\n    return b + a\n"}, "redo")
    return await harness.sc.resolve_head(harness.source)


# URIs the server did not mint, sources it cannot use

UriCall = Callable[[Harness, QueueSource, str, str], Awaitable[object]]

_URI_CALLS: dict[str, UriCall] = {
    "is_ancestor(bad, good)": lambda h, s, bad, good: h.sc.is_ancestor(s, bad, good),
    "is_ancestor(good, bad)": lambda h, s, bad, good: h.sc.is_ancestor(s, good, bad),
    "list_commits(bad, good)": lambda h, s, bad, good: h.sc.list_commits(s, bad, good),
    "list_commits(good, bad)": lambda h, s, bad, good: h.sc.list_commits(s, good, bad),
    "changed_files(bad, good)": lambda h, s, bad, good: h.sc.changed_files(s, bad, good),
    "changed_files(good, bad)": lambda h, s, bad, good: h.sc.changed_files(s, good, bad),
    "describe_commit(bad)": lambda h, s, bad, good: h.sc.describe_commit(s, bad),
    "promote(bad)": lambda h, s, bad, good: h.sc.promote(s, bad, PROMOTION_REF),
}


@pytest.mark.asyncio
class SourceControlContract:
    """Every SourceControl implementation must pass these tests (see the module docstring).

    Needs a ``harness`` fixture returning a :class:`Harness`; ``history`` is
    built from it for each test.
    """

    @pytest_asyncio.fixture
    async def history(self, harness: Harness) -> History:
        return await build_history(harness)

    # ResolveHead and the URI round trip

    async def test_resolve_head_names_the_tip_of_the_branch(
        self, harness: Harness, history: History
    ) -> None:
        head = await harness.sc.resolve_head(harness.source)

        assert head == await harness.sc.resolve_head(harness.source)
        assert await revision(harness, head) == history.fix

    async def test_resolve_head_sees_the_branch_move(
        self, harness: Harness, history: History
    ) -> None:
        before = await harness.sc.resolve_head(harness.source)
        moved = await harness.commit("main", {"docs/more.md": "more\n"}, "more docs")

        after = await harness.sc.resolve_head(harness.source)

        assert after != before
        assert await revision(harness, after) == moved

    async def test_resolve_head_follows_the_queues_own_branch(
        self, harness: Harness, history: History
    ) -> None:
        release = harness.on("release")

        head = await harness.sc.resolve_head(release)

        assert (await harness.sc.describe_commit(release, head)).revision == history.release

    async def test_resolve_head_of_a_missing_branch_is_not_found(
        self, harness: Harness, history: History
    ) -> None:
        error = await rpc_error(harness.sc.resolve_head(harness.on("no-such-branch")))

        assert error.code() is grpc.StatusCode.NOT_FOUND
        assert "no-such-branch" in (error.details() or "")

    async def test_uris_round_trip_through_every_method(
        self, harness: Harness, history: History
    ) -> None:
        green, broken, fix = await uris(harness)

        assert [await revision(harness, u) for u in (green, broken, fix)] == [
            history.green,
            history.broken,
            history.fix,
        ]
        assert fix == await harness.sc.resolve_head(harness.source)
        assert await harness.sc.is_ancestor(harness.source, green, fix) is Ancestry.ANCESTOR
        assert await harness.sc.changed_files(harness.source, green, broken) == ["src/calc.py"]
        assert (await harness.sc.promote(harness.source, broken, PROMOTION_REF)).moved

    # IsAncestor

    async def test_is_ancestor_answers_both_ways(self, harness: Harness, history: History) -> None:
        green, broken, fix = await uris(harness)
        sc, source = harness.sc, harness.source

        assert await sc.is_ancestor(source, green, fix) is Ancestry.ANCESTOR
        assert await sc.is_ancestor(source, broken, fix) is Ancestry.ANCESTOR
        assert await sc.is_ancestor(source, fix, green) is Ancestry.NOT_ANCESTOR
        assert await sc.is_ancestor(source, fix, fix) is Ancestry.ANCESTOR

    async def test_force_push_makes_the_old_head_not_an_ancestor(
        self, harness: Harness, history: History
    ) -> None:
        green, _, fix = await uris(harness)

        head = await rewrite_main(harness, history)

        assert await harness.sc.is_ancestor(harness.source, fix, head) is Ancestry.NOT_ANCESTOR
        assert await harness.sc.is_ancestor(harness.source, green, head) is Ancestry.ANCESTOR
        assert await harness.sc.list_commits(harness.source, fix, head) == [head]

    async def test_ancestry_is_unknown_once_the_rewritten_commit_is_gone(
        self, harness: Harness, history: History
    ) -> None:
        green, _, fix = await uris(harness)
        head = await rewrite_main(harness, history)

        await harness.collect_garbage()

        assert await harness.sc.is_ancestor(harness.source, fix, head) is Ancestry.UNKNOWN
        assert await harness.sc.is_ancestor(harness.source, head, fix) is Ancestry.UNKNOWN
        assert await harness.sc.is_ancestor(harness.source, green, head) is Ancestry.ANCESTOR
        for call in (
            harness.sc.describe_commit(harness.source, fix),
            harness.sc.list_commits(harness.source, fix, head),
            harness.sc.changed_files(harness.source, fix, head),
        ):
            assert (await rpc_error(call)).code() is grpc.StatusCode.NOT_FOUND

    # ListCommits

    async def test_list_commits_is_oldest_first_base_exclusive_head_inclusive(
        self, harness: Harness, history: History
    ) -> None:
        green, broken, fix = await uris(harness)

        assert await harness.sc.list_commits(harness.source, green, fix) == [broken, fix]
        assert await harness.sc.list_commits(harness.source, broken, fix) == [fix]
        assert await harness.sc.list_commits(harness.source, fix, fix) == []
        assert await harness.sc.list_commits(harness.source, "", green) == [green]

    async def test_list_commits_limit_keeps_the_newest(
        self, harness: Harness, history: History
    ) -> None:
        _, broken, fix = await uris(harness)

        assert await harness.sc.list_commits(harness.source, "", fix, limit=2) == [broken, fix]
        assert await harness.sc.list_commits(harness.source, "", fix, limit=1) == [fix]

    async def test_list_commits_rejects_a_negative_limit(
        self, harness: Harness, history: History
    ) -> None:
        head = await harness.sc.resolve_head(harness.source)

        error = await rpc_error(harness.sc.list_commits(harness.source, "", head, limit=-1))

        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT

    # ChangedFiles

    async def test_changed_files_compares_the_two_trees(
        self, harness: Harness, history: History
    ) -> None:
        green, broken, fix = await uris(harness)
        sc, source = harness.sc, harness.source

        assert await sc.changed_files(source, green, broken) == ["src/calc.py"]
        assert await sc.changed_files(source, broken, fix) == ["docs/notes.md", "src/calc.py"]
        assert await sc.changed_files(source, green, fix) == ["docs/notes.md"]
        assert await sc.changed_files(source, fix, fix) == []

    async def test_changed_files_without_a_base_lists_every_file(
        self, harness: Harness, history: History
    ) -> None:
        green, _, fix = await uris(harness)

        assert await harness.sc.changed_files(harness.source, "", green) == [
            "README.md",
            "src/calc.py",
            "tests/test_calc.py",
        ]
        assert "docs/notes.md" in await harness.sc.changed_files(harness.source, "", fix)

    async def test_changed_files_lists_both_paths_of_a_move_and_deletions(
        self, harness: Harness, history: History
    ) -> None:
        before = await harness.sc.resolve_head(harness.source)
        await harness.commit(
            "main", {"README.md": None, "docs/README.md": "# calc\n"}, "move readme"
        )
        after = await harness.sc.resolve_head(harness.source)

        changed = await harness.sc.changed_files(harness.source, before, after)

        assert changed == ["README.md", "docs/README.md"]

    # DescribeCommit

    async def test_describe_commit_gives_the_human_facts(
        self, harness: Harness, history: History
    ) -> None:
        green, _, fix = await uris(harness)

        first = await harness.sc.describe_commit(harness.source, green)
        info = await harness.sc.describe_commit(harness.source, fix)

        assert info.title == "fix add()"
        assert info.author == harness.author
        assert info.revision == history.fix
        assert 4 <= len(info.short_name) < len(info.revision)
        assert info.revision.startswith(info.short_name)
        assert info.time.utcoffset() == timedelta(0)
        assert first.time <= info.time
        assert datetime(2000, 1, 1, tzinfo=UTC) < info.time < datetime.now(UTC) + timedelta(days=1)

    # Promote

    async def test_promote_creates_then_moves_the_ref_forward(
        self, harness: Harness, history: History
    ) -> None:
        green, _, fix = await uris(harness)

        created = await harness.sc.promote(harness.source, green, PROMOTION_REF)
        assert (created.previous_uri, created.moved) == ("", True)
        assert await harness.revision(PROMOTION_REF) == history.green

        forward = await harness.sc.promote(harness.source, fix, PROMOTION_REF)
        assert (forward.previous_uri, forward.moved) == (green, True)
        assert await harness.revision(PROMOTION_REF) == history.fix

    async def test_promote_never_moves_the_ref_backwards(
        self, harness: Harness, history: History
    ) -> None:
        green, broken, fix = await uris(harness)
        await harness.sc.promote(harness.source, fix, PROMOTION_REF)

        backwards = await harness.sc.promote(harness.source, green, PROMOTION_REF)
        again = await harness.sc.promote(harness.source, fix, PROMOTION_REF)
        older = await harness.sc.promote(harness.source, broken, PROMOTION_REF)

        assert (backwards.previous_uri, backwards.moved) == (fix, False)
        assert (again.previous_uri, again.moved) == (fix, False)
        assert (older.previous_uri, older.moved) == (fix, False)
        assert await harness.revision(PROMOTION_REF) == history.fix

    async def test_promote_respects_a_ref_moved_ahead_by_someone_else(
        self, harness: Harness, history: History
    ) -> None:
        green, _, fix = await uris(harness)
        await harness.branch(PROMOTION_REF, history.fix)

        result = await harness.sc.promote(harness.source, green, PROMOTION_REF)

        assert (result.previous_uri, result.moved) == (fix, False)
        assert await harness.revision(PROMOTION_REF) == history.fix

    async def test_promote_follows_a_rewritten_history(
        self, harness: Harness, history: History
    ) -> None:
        _, _, fix = await uris(harness)
        await harness.sc.promote(harness.source, fix, PROMOTION_REF)
        head = await rewrite_main(harness, history)

        result = await harness.sc.promote(harness.source, head, PROMOTION_REF)

        assert (result.previous_uri, result.moved) == (fix, True)
        assert await harness.revision(PROMOTION_REF) == await revision(harness, head)

    async def test_concurrent_promotions_end_at_the_newest(
        self, harness: Harness, history: History
    ) -> None:
        green, broken, fix = await uris(harness)

        results = await asyncio.gather(
            *(harness.sc.promote(harness.source, u, PROMOTION_REF) for u in (fix, green, broken))
        )

        assert await harness.revision(PROMOTION_REF) == history.fix
        assert sum(result.moved for result in results) >= 1

    @pytest.mark.parametrize("ref", ["main", "refs/heads/main", "bad..name", "refs/tags/v1", ""])
    async def test_promote_refuses_an_unusable_promotion_ref(
        self, harness: Harness, history: History, ref: str
    ) -> None:
        head = await harness.sc.resolve_head(harness.source)

        error = await rpc_error(harness.sc.promote(harness.source, head, ref))

        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert await harness.revision("main") == history.fix

    @pytest.mark.parametrize("call", list(_URI_CALLS), ids=list(_URI_CALLS))
    @pytest.mark.parametrize(
        "kind", ["malformed", "truncated", "foreign-repository", "other-branch"]
    )
    async def test_uris_not_minted_for_the_queue_are_invalid_arguments(
        self, harness: Harness, history: History, call: str, kind: str
    ) -> None:
        good = await harness.sc.resolve_head(harness.source)
        bad = {
            "malformed": "not a uri",
            "truncated": good[: len(good) // 2],
            "foreign-repository": await harness.sc.resolve_head(harness.foreign),
            "other-branch": await harness.sc.resolve_head(harness.on("release")),
        }[kind]

        error = await rpc_error(_URI_CALLS[call](harness, harness.source, bad, good))

        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details()

    async def test_an_empty_uri_is_an_invalid_argument_where_one_is_required(
        self, harness: Harness, history: History
    ) -> None:
        good = await harness.sc.resolve_head(harness.source)
        calls = (
            harness.sc.describe_commit(harness.source, ""),
            harness.sc.list_commits(harness.source, good, ""),
            harness.sc.changed_files(harness.source, good, ""),
            harness.sc.is_ancestor(harness.source, "", good),
            harness.sc.promote(harness.source, "", PROMOTION_REF),
        )

        codes = [(await rpc_error(call)).code() for call in calls]

        assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * len(calls)

    async def test_a_repository_that_does_not_exist_is_a_failed_precondition(
        self, harness: Harness, history: History
    ) -> None:
        error = await rpc_error(harness.sc.resolve_head(harness.missing))

        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error.details()

    async def test_a_repository_removed_after_minting_is_a_failed_precondition(
        self, harness: Harness, history: History
    ) -> None:
        head = await harness.sc.resolve_head(harness.source)

        await harness.remove_repository()

        errors = [
            await rpc_error(harness.sc.resolve_head(harness.source)),
            await rpc_error(harness.sc.promote(harness.source, head, PROMOTION_REF)),
        ]
        assert [e.code() for e in errors] == [grpc.StatusCode.FAILED_PRECONDITION] * 2
        assert all(e.details() for e in errors)

    @pytest.mark.parametrize(
        ("repository", "ref"),
        [("", "main"), (None, "bad..ref"), (None, ""), (None, "refs/tags/v1"), (None, "-x")],
    )
    async def test_an_unusable_source_is_an_invalid_argument(
        self, harness: Harness, history: History, repository: str | None, ref: str
    ) -> None:
        source = QueueSource(
            "demo/main", harness.source.repository if repository is None else repository, ref
        )

        error = await rpc_error(harness.sc.resolve_head(source))

        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
