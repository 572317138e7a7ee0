"""Read a push event out of a delivery, whatever host sent it.

Only what mapping needs is read: the repository's names (its clone URLs, web
URL and ``owner/name`` path), the ref pushed, and the new sha, which is a
*hint*: the head is resolved through SourceControl before anything is
ingested. A delivery that is not a push (a ping, an issue comment, a tag) or
that deletes the branch is not an error: it is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stovepipe.config.webhooks import CodeHost

_ZERO_SHA = "0" * 40

EVENT_HEADERS: Mapping[CodeHost, tuple[str, ...]] = {
    "github": ("X-GitHub-Event",),
    "gitlab": ("X-Gitlab-Event",),
    "gitea": ("X-Gitea-Event", "X-Forgejo-Event"),
}
PUSH_EVENTS: Mapping[CodeHost, str] = {
    "github": "push",
    "gitlab": "Push Hook",
    "gitea": "push",
}
DELIVERY_HEADERS: Mapping[CodeHost, tuple[str, ...]] = {
    "github": ("X-GitHub-Delivery",),
    "gitlab": ("X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID"),
    "gitea": ("X-Gitea-Delivery", "X-Forgejo-Delivery"),
}


class MalformedPayload(ValueError):
    """The body is not the JSON push event its headers announce."""


@dataclass(frozen=True)
class Push:
    """One branch update: which repository (by every name the host gave), ref, sha hint."""

    repository_names: tuple[str, ...]
    ref: str
    sha_hint: str
    delivery: str


def _header(headers: Mapping[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        if value := headers.get(name):
            return value
    return ""


def read_push(host: CodeHost, headers: Mapping[str, str], body: bytes) -> Push | None:
    """The push in the delivery; None for any other event or a branch deletion."""
    if _header(headers, EVENT_HEADERS[host]) != PUSH_EVENTS[host]:
        return None
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPayload(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedPayload("the body is not a JSON object")
    ref = _text(data, "ref")
    sha = _text(data, "after")
    if not ref.startswith("refs/heads/"):
        return None  # a tag: Queues follow branches
    if not sha or sha == _ZERO_SHA:
        return None  # the branch was deleted: there is no head to validate
    names = _gitlab_names(data) if host == "gitlab" else _repository_names(data)
    if not names:
        raise MalformedPayload("the push names no repository")
    return Push(names, ref, sha, _header(headers, DELIVERY_HEADERS[host])[:128])


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _repository_names(data: Mapping[str, Any]) -> tuple[str, ...]:
    repository = data.get("repository")
    if not isinstance(repository, dict):
        return ()
    keys = ("clone_url", "ssh_url", "html_url", "git_url", "full_name")
    return tuple(v for k in keys if (v := _text(repository, k)))


def _gitlab_names(data: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for section, keys in (
        ("project", ("git_http_url", "git_ssh_url", "web_url", "path_with_namespace")),
        ("repository", ("git_http_url", "git_ssh_url", "homepage", "url")),
    ):
        part = data.get(section)
        if isinstance(part, dict):
            found.extend(v for k in keys if (v := _text(part, k)))
    return tuple(dict.fromkeys(found))
