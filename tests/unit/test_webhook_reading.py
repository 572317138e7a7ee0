"""Signatures, push payloads and repository matching of the webhook receiver (no I/O)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from stovepipe.config import config_from_mapping
from stovepipe.webhooks.matching import normal_form, queues_for
from stovepipe.webhooks.payloads import MalformedPayload, Push, read_push
from stovepipe.webhooks.signatures import sign, verify

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))
from harness.push_payloads import delivery


@pytest.mark.parametrize("host", ["github", "gitlab", "gitea"])
def test_only_the_right_secret_verifies(host: str) -> None:
    body = b'{"ref": "refs/heads/main"}'
    headers = sign(host, "s3cret", body)  # type: ignore[arg-type]
    assert verify(host, "s3cret", headers, body)  # type: ignore[arg-type]
    assert not verify(host, "other", headers, body)  # type: ignore[arg-type]
    assert not verify(host, "s3cret", {}, body)  # type: ignore[arg-type]
    if host != "gitlab":  # a signature covers the body; GitLab's token does not
        assert not verify(host, "s3cret", headers, body + b" ")  # type: ignore[arg-type]


def test_a_github_signature_without_its_prefix_is_refused() -> None:
    body = b"{}"
    digest = sign("github", "k", body)["X-Hub-Signature-256"].removeprefix("sha256=")
    assert not verify("github", "k", {"X-Hub-Signature-256": digest}, body)


@pytest.mark.parametrize("host", ["github", "gitlab", "gitea"])
def test_each_host_push_is_read_the_same_way(host: str) -> None:
    body, headers = delivery(host, "k", "acme", "tools", "a" * 40)  # type: ignore[arg-type]
    push = read_push(host, headers, body)  # type: ignore[arg-type]
    assert push is not None
    assert push.ref == "refs/heads/main" and push.sha_hint == "a" * 40 and push.delivery
    assert any(name.endswith("acme/tools") for name in map(normal_form, push.repository_names))


def test_non_pushes_tags_and_deletions_are_not_pushes() -> None:
    for kwargs in ({"event": "ping"}, {"ref": "refs/tags/v1"}):
        body, headers = delivery("github", "k", "acme", "tools", "a" * 40, **kwargs)
        assert read_push("github", headers, body) is None
    body, headers = delivery("github", "k", "acme", "tools", "0" * 40)
    assert read_push("github", headers, body) is None


@pytest.mark.parametrize(
    "body", [b"{nope", b"[1, 2]", json.dumps({"ref": "refs/heads/main", "after": "a"}).encode()]
)
def test_malformed_pushes_are_reported(body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        read_push("github", {"X-GitHub-Event": "push"}, body)


@pytest.mark.parametrize(
    ("location", "normal"),
    [
        ("https://github.com/Acme/Tools.git", "github.com/acme/tools"),
        ("https://user@github.com:443/acme/tools/", "github.com/acme/tools"),
        ("git@github.com:acme/tools.git", "github.com/acme/tools"),
        ("ssh://git@gitlab.example/group/sub/tools.git", "gitlab.example/group/sub/tools"),
        ("/srv/git/acme/tools.git", "srv/git/acme/tools"),
        ("acme/tools", "acme/tools"),
    ],
)
def test_repository_locations_have_one_normal_form(location: str, normal: str) -> None:
    assert normal_form(location) == normal


def test_a_push_maps_to_the_queues_of_its_repository_and_branch() -> None:
    def q(name: str, repository: str, ref: str = "main") -> dict[str, object]:
        return {
            "name": name,
            "source": {"repository": repository, "ref": ref},
            "build": {"targets": [{"name": "t", "command": "true"}]},
        }

    config = config_from_mapping(
        {
            "queues": [
                q("mirror/main", "/srv/git/acme/tools.git"),
                q("url/main", "https://github.com/acme/tools.git"),
                q("ssh/main", "git@github.com:acme/tools"),
                q("branch/release", "/srv/git/acme/tools.git", "release"),
                q("other/main", "/srv/git/acme/toolsmith.git"),
                q("bare/main", "/srv/git/tools.git"),
            ]
        }
    )
    push = Push(
        ("https://github.com/acme/tools.git", "git@github.com:acme/tools.git", "acme/tools"),
        "refs/heads/main",
        "a" * 40,
        "d1",
    )
    assert [c.name for c in queues_for(push, config.queues)] == [
        "mirror/main",
        "url/main",
        "ssh/main",
    ]
