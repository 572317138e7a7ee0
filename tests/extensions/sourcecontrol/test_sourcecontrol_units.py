"""The pure parts of SourceControl: names, locations, URIs, failure words, the codec."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest

from stovepipe.ext.v1 import source_control_pb2 as pb
from stovepipe.extensions.sourcecontrol import (
    Ancestry,
    CommitInfo,
    InvalidArgument,
    NotFound,
    RepositoryUnusable,
    Unavailable,
)
from stovepipe.extensions.sourcecontrol.codec import (
    decode_ancestry,
    decode_commit,
    encode_ancestry,
    encode_commit,
)
from stovepipe.extensions.sourcecontrol.errors import as_rpc_error
from stovepipe.extensions.sourcecontrol.git.location import parse_location, redact_urls
from stovepipe.extensions.sourcecontrol.git.remote_failures import remote_failure
from stovepipe.extensions.sourcecontrol.git.uri import commit_of, mint
from stovepipe.extensions.sourcecontrol.names import branch_name

SHA1 = "5d41402abc4b2a76b9719d911017c592aa5e1c3b"
SHA256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("main", "main"),
        ("refs/heads/main", "main"),
        ("release/1.x", "release/1.x"),
        ("user@feature", "user@feature"),
        ("fix-#12", "fix-#12"),
        ("caf\u00e9", "caf\u00e9"),
    ],
)
def test_branch_names_git_accepts_are_accepted(ref: str, name: str) -> None:
    assert branch_name(ref) == name


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "refs/heads/",
        "HEAD",
        "@",
        "-main",
        "a..b",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[b",
        "a\\b",
        "a@{1}",
        "/a",
        "a/",
        "a//b",
        "a.",
        ".a",
        "a/.b",
        "a.lock",
        "a/b.lock/c",
        "tab\there",
        "refs/tags/v1",
        "refs/remotes/origin/main",
        "x" * 256,
    ],
)
def test_branch_names_git_refuses_are_invalid_arguments(ref: str) -> None:
    with pytest.raises(InvalidArgument):
        branch_name(ref)


@pytest.mark.parametrize(
    ("repository", "display", "remote"),
    [
        ("/srv/git/calc", "/srv/git/calc", False),
        ("file:///srv/git/calc.git", "file:///srv/git/calc.git", True),
        (
            "https://robot:tok@git.example.com/org/calc.git",
            "https://git.example.com/org/calc.git",
            True,
        ),
        ("https://tok@git.example.com/org/calc.git", "https://git.example.com/org/calc.git", True),
        (
            "ssh://git:pw@git.example.com:2222/calc.git",
            "ssh://git@git.example.com:2222/calc.git",
            True,
        ),
        ("git@git.example.com:org/calc.git", "git@git.example.com:org/calc.git", True),
        ("http://[::1]:8080/calc.git", "http://[::1]:8080/calc.git", True),
    ],
)
def test_locations_are_shown_without_credentials(
    repository: str, display: str, remote: bool
) -> None:
    location = parse_location(repository)

    assert (location.display, location.remote) == (display, remote)
    assert location.argument == repository


def test_a_repository_key_survives_credential_rotation_but_not_a_move() -> None:
    old = parse_location("https://old-token@git.example.com/org/calc.git")
    new = parse_location("https://new-token@GIT.example.com/org/calc.git/")
    moved = parse_location("https://git.example.com/org/other.git")

    assert old.key == new.key
    assert moved.key != old.key
    assert parse_location("/srv/git/calc/").key == parse_location("/srv/git/calc").key


@pytest.mark.parametrize(
    "repository",
    [
        "",
        "calc",
        "./calc",
        "~/calc",
        "ext::sh -c 'touch /tmp/x'",
        "fd::3",
        "ftp://example.com/calc.git",
        "https:///calc.git",
        "https://host:notaport/calc.git",
        "file://relative/calc.git",
        "/srv/git/calc\nINFO forged log line",
        "-uupload-pack=touch",
    ],
)
def test_unusable_repositories_are_invalid_arguments(repository: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_location(repository)


def test_redaction_removes_credentials_from_git_output() -> None:
    location = parse_location("https://robot:s3cret@git.example.com/calc.git")
    text = (
        "fatal: unable to access 'https://robot:s3cret@git.example.com/calc.git/': "
        "see also http://a:b@c/d and ssh://me:pw@host/x"
    )

    redacted = location.redact(text)

    assert "s3cret" not in redacted
    assert ":b@" not in redacted
    assert ":pw@" not in redacted
    assert "git.example.com/calc.git" in redacted
    assert redact_urls("ssh://me:pw@host/x") == "ssh://me@host/x"
    assert redact_urls("svn+https://tok@host/x") == "svn+https://host/x"


@pytest.mark.parametrize(
    "repository",
    ["ftp://robot:s3cret@h/x", "robot:s3cret@h:x", "https://robot:s3cret@h:port/x"],
)
def test_refused_repositories_are_not_echoed_with_their_credentials(repository: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_location(repository)

    assert "s3cret" not in str(raised.value)


def test_uris_round_trip_and_refuse_what_was_minted_elsewhere() -> None:
    calc = parse_location("/srv/git/calc")
    other = parse_location("/srv/git/other")
    uri = mint(calc, "main", SHA1)

    assert uri.startswith("git+")
    assert commit_of(uri, location=calc, branch="main", field="uri") == SHA1
    assert commit_of(mint(calc, "a@b", SHA256), location=calc, branch="a@b", field="u") == SHA256
    for bad, location, branch in [
        (uri, other, "main"),
        (uri, calc, "release"),
        (uri.upper(), calc, "main"),
        (uri[:-1], calc, "main"),
        (uri + "0", calc, "main"),
        (uri.replace("git+", "hg+"), calc, "main"),
        (mint(calc, "a..b", SHA1), calc, "a..b"),
        (mint(calc, "x" * 600, SHA1), calc, "x" * 600),
        ("", calc, "main"),
    ]:
        with pytest.raises(InvalidArgument):
            commit_of(bad, location=location, branch=branch, field="uri")


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("fatal: couldn't find remote ref refs/heads/main", NotFound),
        ("fatal: '/x' does not appear to be a git repository", RepositoryUnusable),
        (
            "remote: Repository not found.\nfatal: repository 'https://h/x/' not found",
            RepositoryUnusable,
        ),
        ("fatal: Authentication failed for 'https://h/x/'", RepositoryUnusable),
        (
            "fatal: could not read Username for 'https://h': terminal prompts disabled",
            RepositoryUnusable,
        ),
        (
            "git@h: Permission denied (publickey).\nfatal: Could not read from remote repository.",
            RepositoryUnusable,
        ),
        ("Host key verification failed.", RepositoryUnusable),
        (
            "fatal: unable to access 'https://h/x/': The requested URL returned error: 403",
            RepositoryUnusable,
        ),
        (
            "fatal: unable to access 'https://h/x/': The requested URL returned error: 502",
            Unavailable,
        ),
        ("fatal: unable to access 'https://h/x/': Could not resolve host: h", Unavailable),
        (
            "ssh: connect to host h port 22: Connection refused\n"
            "fatal: Could not read from remote repository.",
            Unavailable,
        ),
        ("fatal: the remote end hung up unexpectedly\nfatal: early EOF", Unavailable),
        ("error: RPC failed; curl 56 GnuTLS recv error (-9)", Unavailable),
        ("something git never said before", Unavailable),
    ],
)
def test_remote_failures_are_classified_by_what_git_says(stderr: str, kind: type) -> None:
    error = remote_failure("fetching 'main'", parse_location("https://tok@h/x"), stderr)

    assert type(error) is kind
    assert "tok" not in str(error)


def test_remote_failure_messages_are_one_bounded_line() -> None:
    error = remote_failure("fetching 'main'", parse_location("/srv/x"), "boom\n" * 1000)

    assert "\n" not in str(error)
    assert len(str(error)) < 700


def test_ancestry_survives_the_wire_and_an_unspecified_answer_reads_unknown() -> None:
    for ancestry in Ancestry:
        assert decode_ancestry(encode_ancestry(ancestry)) is ancestry
    assert decode_ancestry(pb.ANCESTRY_UNSPECIFIED) is Ancestry.UNKNOWN


def test_commit_info_survives_the_wire_in_utc() -> None:
    info = CommitInfo(
        time=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        author="A <a@example.com>",
        title="t",
        short_name="5d41402",
        revision=SHA1,
    )

    assert decode_commit(encode_commit(info)) == info


def test_errors_become_the_rpc_errors_a_client_would_see() -> None:
    error = as_rpc_error(Unavailable("fetching failed"))

    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert error.details() == "fetching failed"


@pytest.mark.parametrize(
    "repository",
    [
        "a" * 200_000,  # no '@' at all: once made the masking scan quadratic
        "relative/" + "user:secretpassword" * 10_000 + "@host/x",
        "ext::" + "x" * 100_000,
    ],
)
def test_a_huge_refused_repository_is_quoted_short_and_masked(repository: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        parse_location(repository)
    message = str(refused.value)
    assert len(message) < 1_000
    assert "secretpassword" not in message
