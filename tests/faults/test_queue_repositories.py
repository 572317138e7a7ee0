"""The fault stack's Queue repositories take concurrent pushes while the extensions work in them.

The soak pushes several heads at once (one thread each) while the git
SourceControl resolves, lists, describes and promotes, and the local runner
clones, fetches and checks out. Commits once went straight into the working
tree the extensions read, from those threads at the same time, and one of two
``git commit`` runs failed on ``index.lock`` (exit 128). A Queue now names a
bare origin that a working clone pushes to, one commit at a time.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from harness.fault_checks import commit_of
from harness.fault_stack import QueueRepo
from harness.sourcecontrol import promoting
from stovepipe.extensions.buildrunner.local.workspace import Workspace
from stovepipe.extensions.sourcecontrol import QueueSource
from stovepipe.extensions.sourcecontrol.git import GitSettings, GitSourceControl, ServedRepositories

PUSHES = 24
PROMOTION_REF = "verified-main"


async def test_concurrent_pushes_while_the_extensions_read_fetch_and_promote(
    tmp_path: Path,
) -> None:
    repo = await asyncio.to_thread(QueueRepo.create, "fault/q0", tmp_path / "repo")
    first = await asyncio.to_thread(repo.commit, True)
    source = QueueSource("fault/q0", str(repo.origin), "main")
    sc = GitSourceControl(
        ServedRepositories([promoting(str(repo.origin))]),
        GitSettings(cache_dir=tmp_path / "git-cache"),
    )
    workspace = Workspace(tmp_path / "runner")
    await workspace.prepare()
    pushing = True
    builds = itertools.count()

    async def source_control() -> int:
        rounds = 0
        while pushing or rounds == 0:
            head = await sc.resolve_head(source)
            uris = await sc.list_commits(source, "", head)
            await sc.describe_commit(source, head)
            await sc.changed_files(source, uris[0], head)
            await sc.is_ancestor(source, uris[0], head)
            await sc.promote(source, head, PROMOTION_REF)
            rounds += 1
        return rounds

    async def runner() -> int:
        rounds = 0
        while pushing or rounds == 0:
            head = await asyncio.to_thread(repo.ref, "main")
            assert head is not None
            build = f"build-{next(builds)}"
            await workspace.check_out(build, str(repo.origin), head)
            await workspace.release(build, str(repo.origin))
            rounds += 1
        return rounds

    readers = [asyncio.create_task(source_control()) for _ in range(2)]
    readers.append(asyncio.create_task(runner()))
    try:
        pushed = await asyncio.gather(
            *(asyncio.to_thread(repo.commit, n % 3 != 0) for n in range(PUSHES))
        )
    finally:
        pushing = False
        rounds = await asyncio.gather(*readers)
    await sc.close()

    assert all(rounds), rounds
    assert sorted(repo.order) == sorted([first, *pushed])
    head = await sc.resolve_head(source)
    history = [commit_of(uri) for uri in await sc.list_commits(source, "", head)]
    assert history == repo.order  # recorded in the order the branch has them
    assert {repo.truth[sha] for sha in pushed} == {True, False}
    promoted = await asyncio.to_thread(repo.ref, PROMOTION_REF)
    assert promoted in repo.order
