"""The git server's kept libgit2 handles: no git process per question, answers equal to
git's, changes by other processes seen at once, many callers at once, and a handle that
keeps answering after a failed call.

``git_identity`` (autouse, conftest) gives every git here the tests' author.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from harness.git_repos import WorkRepo, git
from harness.sourcecontrol import promoting
from stovepipe.extensions.sourcecontrol import Ancestry, QueueSource, SourceControlClient
from stovepipe.extensions.sourcecontrol.errors import GitFailed
from stovepipe.extensions.sourcecontrol.git import (
    GitSourceControl,
    ServedRepositories,
    ServedRepository,
)
from stovepipe.extensions.sourcecontrol.git import process as git_process
from stovepipe.extensions.sourcecontrol.git import repository as git_repository
from stovepipe.extensions.sourcecontrol.git.repository import open_local
from stovepipe.testing.contracts.sourcecontrol import PROMOTION_REF


@pytest.fixture
def served(served: list[ServedRepository], tmp_path: Path) -> list[ServedRepository]:
    return [*served, promoting(str(tmp_path / "local"))]


@pytest.fixture
def repo(tmp_path: Path) -> WorkRepo:
    return WorkRepo(tmp_path / "local")


@pytest.fixture
def source(tmp_path: Path) -> QueueSource:
    return QueueSource("demo/main", str(tmp_path / "local"), "main")


@pytest.fixture
def git_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every git process the server starts, by its arguments."""
    runs: list[list[str]] = []
    real = git_process.run_git

    async def counted(args: list[str], **kwargs: object) -> git_process.GitResult:
        runs.append(list(args))
        return await real(args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(git_repository, "run_git", counted)
    return runs


def _uri_of(head: str, sha: str) -> str:
    return head.rsplit("@", 1)[0] + "@" + sha


async def test_reads_start_no_git_process_and_promote_starts_one_update_ref(
    client: SourceControlClient, repo: WorkRepo, source: QueueSource, git_runs: list[list[str]]
) -> None:
    first = repo.commit(repo.touch("a.txt"), "first")
    second = repo.commit(repo.touch("b/c.txt"), "second")
    head = await client.resolve_head(source)  # the first call vets the path with git once
    git_runs.clear()
    old, new = _uri_of(head, first), _uri_of(head, second)
    for _ in range(3):
        assert await client.resolve_head(source) == new
        assert await client.is_ancestor(source, old, new) is Ancestry.ANCESTOR
        assert await client.list_commits(source, old, new) == [new]
        assert await client.changed_files(source, old, new) == ["b/c.txt"]
        assert (await client.describe_commit(source, new)).title == "second"
    assert git_runs == []
    result = await client.promote(source, new, PROMOTION_REF)
    assert result.moved
    assert [run[2] for run in git_runs] == ["update-ref"]  # ["--git-dir", dir, "update-ref", ...]
    assert repo.git("rev-parse", PROMOTION_REF) == second


async def test_answers_equal_gits_own(tmp_path: Path, repo: WorkRepo) -> None:
    base = repo.commit({"keep.txt": "k\n", "old/name.txt": "n\n", "gone.txt": "g\n"}, "base")
    repo.branch("side", base)
    repo.commit({"side.txt": "s\n"}, "on the side", branch="side")
    repo.commit(
        {"old/name.txt": None, "new/name.txt": "n\n", "gone.txt": None},
        "Rename and drop\ncontinued subject\n\nbody text",
    )
    repo.git("merge", "--quiet", "--no-ff", "-m", "merge side", "side")
    head = repo.git("rev-parse", "HEAD")
    repository = await open_local(tmp_path / "local", "local", 60)

    def lines(*args: str) -> list[str]:
        return repo.git(*args).splitlines()

    assert await repository.branch_commit("main") == head
    assert await repository.branch_commit("nothing-here") is None
    assert await repository.changed_paths(base, head) == sorted(
        set(lines("diff-tree", "-r", "--name-only", "--no-renames", base, head))
    )
    assert await repository.all_paths(head) == sorted(
        lines("ls-tree", "-r", "--name-only", "--full-tree", head)
    )
    listed = await repository.commits_between(base, head, 100)
    assert sorted(listed) == sorted(lines("rev-list", head, f"^{base}"))
    for i, commit in enumerate(listed):  # parents before children
        parents = repo.git("rev-list", "--parents", "-n", "1", commit).split()[1:]
        assert all(p == base or listed.index(p) < i for p in parents)
    assert await repository.commits_between(None, head, 2) == listed[-2:]
    rename = repo.git("rev-parse", "HEAD^1")
    described = await repository.describe(rename)
    assert described.title == repo.git("log", "-1", "--format=%s", rename)
    assert described.short_name == repo.git("log", "-1", "--format=%h", rename)
    assert described.revision == rename
    assert int(described.time.timestamp()) == int(repo.git("log", "-1", "--format=%ct", rename))
    assert described.author == repo.git("log", "-1", "--format=%an <%ae>", rename)
    assert await repository.is_ancestor(base, head) and await repository.is_ancestor(head, head)
    assert not await repository.is_ancestor(head, base)
    assert await repository.missing(head, "0" * 40) == {"0" * 40}


async def test_changes_by_other_processes_are_seen_at_once(
    client: SourceControlClient, repo: WorkRepo, source: QueueSource, tmp_path: Path
) -> None:
    first = repo.commit(repo.touch("a.txt"), "first")
    head = await client.resolve_head(source)
    second = repo.commit(repo.touch("a.txt"), "second")
    assert await client.resolve_head(source) == _uri_of(head, second)
    repo.force_push("main", first)
    assert await client.resolve_head(source) == _uri_of(head, first)
    repo.git("pack-refs", "--all")  # the branch now lives in packed-refs only
    third = repo.commit(repo.touch("b.txt"), "third")
    repo.git("pack-refs", "--all")
    assert await client.resolve_head(source) == _uri_of(head, third)
    # Deleted and made again at the same path: a new repository, never the old handle.
    shutil.rmtree(tmp_path / "local")
    again = WorkRepo(tmp_path / "local")
    other = again.commit({"z.txt": "z\n"}, "another history")
    assert await client.resolve_head(source) == _uri_of(head, other)
    assert (
        await client.is_ancestor(source, _uri_of(head, first), _uri_of(head, other))
        is Ancestry.UNKNOWN
    )


async def test_many_callers_at_once_get_gits_answers(
    client: SourceControlClient, repo: WorkRepo, source: QueueSource
) -> None:
    shas = [repo.commit(repo.touch(f"f{i % 4}.txt"), f"commit {i}") for i in range(12)]
    head = await client.resolve_head(source)
    uris = [_uri_of(head, sha) for sha in shas]

    async def one(i: int) -> tuple[object, ...]:
        a, b = uris[i % 11], uris[i % 11 + 1]
        return (
            await client.is_ancestor(source, a, b),
            await client.is_ancestor(source, b, a),
            await client.list_commits(source, a, b),
            (await client.describe_commit(source, b)).title,
            await client.changed_files(source, a, b),
        )

    answers = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(64))), 300)
    for i, (forward, backward, listed, title, changed) in enumerate(answers):
        k = i % 11
        assert forward is Ancestry.ANCESTOR and backward is Ancestry.NOT_ANCESTOR
        assert listed == [uris[k + 1]]
        assert title == f"commit {k + 1}"
        assert changed == [f"f{(k + 1) % 4}.txt"]


async def test_a_failed_read_leaves_the_handle_answering(tmp_path: Path, repo: WorkRepo) -> None:
    first = repo.commit(repo.touch("a.txt"), "first")
    repository = await open_local(tmp_path / "local", "local", 60)
    with pytest.raises(GitFailed, match="ancestry check"):
        await repository.is_ancestor("1" * 40, first)
    failing = [repository.describe("2" * 40) for _ in range(8)]
    results = await asyncio.gather(*failing, return_exceptions=True)
    assert all(isinstance(r, GitFailed) for r in results)
    assert await repository.branch_commit("main") == first
    assert (await repository.describe(first)).title == "first"


async def test_a_vanished_repository_is_unusable_and_a_new_one_is_read(
    tmp_path: Path, repo: WorkRepo
) -> None:
    repo.commit(repo.touch("a.txt"), "first")
    backend = GitSourceControl(ServedRepositories([promoting(str(tmp_path / "local"))]))
    source = QueueSource("demo/main", str(tmp_path / "local"), "main")
    await backend.resolve_head(source)
    shutil.rmtree(tmp_path / "local")
    with pytest.raises(Exception, match="does not exist"):
        await backend.resolve_head(source)
    again = WorkRepo(tmp_path / "local")
    sha = again.commit(again.touch("b.txt"), "fresh")
    assert (await backend.resolve_head(source)).endswith("@" + sha)
    assert git("-C", str(tmp_path / "local"), "rev-parse", "HEAD") == sha
    await backend.close()
