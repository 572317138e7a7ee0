"""The git server's allow-list: only configured repositories are read, only configured
promotion refs are moved, and everything else is PERMISSION_DENIED with nothing touched."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest

from harness.git_repos import WorkRepo, init_bare
from stovepipe.config import config_from_mapping
from stovepipe.extensions.sourcecontrol import QueueSource, SourceControlClient
from stovepipe.extensions.sourcecontrol.git import (
    Promotion,
    ServedRepositories,
    ServedRepository,
    main,
    served_from_config,
)
from stovepipe.runtime.processes import free_port
from stovepipe.testing.contracts.sourcecontrol import PROMOTION_REF


async def rpc_error(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


@pytest.fixture
def listed(tmp_path: Path) -> WorkRepo:
    """The one local repository the server serves: ``main`` promotes to ``verified-main``;
    ``release`` exists but promotes nowhere."""
    work = WorkRepo(tmp_path / "area" / "listed")
    first = work.commit({"a.txt": "a\n"}, "first")
    work.branch("release", first)
    work.commit({"b.txt": "b\n"}, "second")
    return work


@pytest.fixture
def unlisted(tmp_path: Path) -> WorkRepo:
    """A real repository next to the listed one that the server must not read."""
    work = WorkRepo(tmp_path / "area" / "unlisted")
    work.commit({"secret.txt": "do not read\n"}, "private")
    return work


@pytest.fixture
def served(tmp_path: Path) -> list[ServedRepository]:
    return [
        ServedRepository(
            str(tmp_path / "area" / "listed"),
            frozenset({Promotion("main", PROMOTION_REF)}),
        )
    ]


def source(path: Path | str, ref: str = "main") -> QueueSource:
    return QueueSource("demo/main", str(path), ref)


async def test_a_listed_repository_is_served_and_its_promotion_moves(
    client: SourceControlClient, listed: WorkRepo
) -> None:
    head = await client.resolve_head(source(listed.path))

    result = await client.promote(source(listed.path), head, PROMOTION_REF)

    assert result.moved
    assert listed.revision(PROMOTION_REF) == listed.revision("main")


async def test_every_method_refuses_an_unlisted_repository(
    client: SourceControlClient, listed: WorkRepo, unlisted: WorkRepo
) -> None:
    good = await client.resolve_head(source(listed.path))
    other = source(unlisted.path)

    errors = [
        await rpc_error(client.resolve_head(other)),
        await rpc_error(client.describe_commit(other, good)),
        await rpc_error(client.is_ancestor(other, good, good)),
        await rpc_error(client.list_commits(other, "", good)),
        await rpc_error(client.changed_files(other, "", good)),
        await rpc_error(client.promote(other, good, PROMOTION_REF)),
    ]

    assert {e.code() for e in errors} == {grpc.StatusCode.PERMISSION_DENIED}
    assert "not served" in (errors[0].details() or "")
    assert unlisted.revision(PROMOTION_REF) is None


async def test_a_path_that_climbs_out_of_a_listed_repository_is_refused(
    client: SourceControlClient, listed: WorkRepo, unlisted: WorkRepo
) -> None:
    climbing = f"{listed.path}/../unlisted"

    error = await rpc_error(client.resolve_head(source(climbing)))

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_another_spelling_of_a_listed_path_reads_the_configured_repository(
    client: SourceControlClient, listed: WorkRepo, tmp_path: Path
) -> None:
    # ``area/link/../listed`` normalises to the listed repository, but the file system
    # follows the symlink first and lands on ``decoy/listed``: the server must read the
    # repository it was configured with, not the one the caller's spelling reaches.
    decoy = WorkRepo(tmp_path / "decoy" / "listed")
    decoy.commit({"decoy.txt": "x\n"}, "decoy")
    (tmp_path / "decoy" / "inner").mkdir()
    (tmp_path / "area" / "link").symlink_to(tmp_path / "decoy" / "inner")
    respelled = source(f"{tmp_path}/area/link/../listed")

    head = await client.resolve_head(respelled)

    assert (await client.describe_commit(respelled, head)).revision == listed.revision("main")


async def test_an_unlisted_url_is_refused_before_anything_is_fetched(
    client: SourceControlClient, tmp_path: Path
) -> None:
    remote = init_bare(tmp_path / "remote.git")
    WorkRepo(tmp_path / "work", remote=remote).commit({"a.txt": "a\n"}, "first")
    urls = [f"file://{remote}", f"https://127.0.0.1:{free_port()}/calc.git"]

    errors = [await rpc_error(client.resolve_head(source(url))) for url in urls]

    assert [e.code() for e in errors] == [grpc.StatusCode.PERMISSION_DENIED] * 2
    assert not list((tmp_path / "cache").glob("mirrors/*"))


@pytest.mark.parametrize("ref", ["release", "verified-release", "refs/heads/hotfix"])
async def test_promote_to_a_ref_no_queue_configures_is_refused_and_changes_nothing(
    client: SourceControlClient, listed: WorkRepo, ref: str
) -> None:
    before = listed.revision("release")
    head = await client.resolve_head(source(listed.path))

    error = await rpc_error(client.promote(source(listed.path), head, ref))

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert PROMOTION_REF in (error.details() or "")
    assert listed.revision("release") == before
    assert listed.revision("verified-release") is None
    assert listed.revision("hotfix") is None


async def test_a_configured_promotion_ref_is_refused_to_a_queue_on_another_branch(
    client: SourceControlClient, listed: WorkRepo
) -> None:
    release = source(listed.path, "release")
    head = await client.resolve_head(release)

    error = await rpc_error(client.promote(release, head, PROMOTION_REF))

    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert listed.revision(PROMOTION_REF) is None


def test_the_allow_list_comes_from_the_queues_of_the_configuration(tmp_path: Path) -> None:
    def queue(name: str, repository: str, ref: str, promotion: str | None) -> dict[str, object]:
        return {
            "name": name,
            "source": {"repository": repository, "ref": ref},
            "build": {"targets": [{"name": "t", "command": "true"}]},
            **({"promotion_ref": promotion} if promotion else {}),
        }

    config = config_from_mapping(
        {
            "queues": [
                queue("mono/main", "/srv/mono", "refs/heads/main", "refs/heads/verified-main"),
                queue("mono/release", "/srv/mono/", "release", None),
                queue("web/main", "https://git.example.com/web.git", "main", "green"),
            ]
        }
    )

    served = served_from_config(config)

    assert served.describe() == [
        "/srv/mono [main -> verified-main]",
        "https://git.example.com/web.git [main -> green]",
    ]


@pytest.mark.parametrize(
    "entry",
    [
        ServedRepository("relative/path"),
        ServedRepository("ext::sh -c id"),
        ServedRepository("/srv/ok", frozenset({Promotion("main", "bad..ref")})),
    ],
)
def test_an_unusable_allow_list_entry_is_refused_at_start(entry: ServedRepository) -> None:
    with pytest.raises(ValueError, match="cannot serve"):
        ServedRepositories([entry])


def test_main_refuses_to_start_without_a_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STOVEPIPE_CONFIG", raising=False)

    with pytest.raises(SystemExit) as exited:
        main(["--listen", "127.0.0.1:0"])

    assert exited.value.code == 2
    assert "--config is required" in capsys.readouterr().err


def test_main_refuses_a_configuration_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "stovepipe.yaml"
    config.write_text("queues: [{name: 'Not A Queue'}]\n")

    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config)])

    assert exited.value.code == 2
    assert "cannot read the Queues to serve" in capsys.readouterr().err
