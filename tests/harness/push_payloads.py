"""Push deliveries shaped like each code host's documented push event (written for these
tests; only the fields a receiver reads, plus a few around them for realism)."""

from __future__ import annotations

import json
import uuid

from stovepipe.config.webhooks import CodeHost
from stovepipe.webhooks.signatures import sign


def github(owner: str, name: str, ref: str, sha: str) -> dict[str, object]:
    return {
        "ref": ref,
        "before": "0" * 39 + "1",
        "after": sha,
        "created": False,
        "deleted": False,
        "forced": False,
        "repository": {
            "id": 4242,
            "name": name,
            "full_name": f"{owner}/{name}",
            "private": True,
            "html_url": f"https://github.com/{owner}/{name}",
            "clone_url": f"https://github.com/{owner}/{name}.git",
            "ssh_url": f"git@github.com:{owner}/{name}.git",
            "default_branch": "main",
        },
        "pusher": {"name": "dev", "email": "dev@example.invalid"},
        "head_commit": {"id": sha, "message": "change"},
        "commits": [{"id": sha, "message": "change"}],
    }


def gitlab(owner: str, name: str, ref: str, sha: str) -> dict[str, object]:
    base = f"gitlab.example.invalid/{owner}/{name}"
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": "0" * 39 + "1",
        "after": sha,
        "ref": ref,
        "checkout_sha": sha,
        "user_username": "dev",
        "project_id": 7,
        "project": {
            "id": 7,
            "name": name,
            "path_with_namespace": f"{owner}/{name}",
            "web_url": f"https://{base}",
            "git_http_url": f"https://{base}.git",
            "git_ssh_url": f"git@gitlab.example.invalid:{owner}/{name}.git",
            "default_branch": "main",
        },
        "repository": {"name": name, "homepage": f"https://{base}"},
        "commits": [{"id": sha, "message": "change"}],
        "total_commits_count": 1,
    }


def gitea(owner: str, name: str, ref: str, sha: str) -> dict[str, object]:
    base = f"codeberg.invalid/{owner}/{name}"
    return {
        "ref": ref,
        "before": "0" * 39 + "1",
        "after": sha,
        "compare_url": f"https://{base}/compare/x...{sha}",
        "commits": [{"id": sha, "message": "change"}],
        "repository": {
            "id": 9,
            "name": name,
            "full_name": f"{owner}/{name}",
            "html_url": f"https://{base}",
            "clone_url": f"https://{base}.git",
            "ssh_url": f"git@codeberg.invalid:{owner}/{name}.git",
            "default_branch": "main",
        },
        "pusher": {"login": "dev"},
    }


SHAPES = {"github": github, "gitlab": gitlab, "gitea": gitea}
EVENT_HEADER = {
    "github": ("X-GitHub-Event", "push"),
    "gitlab": ("X-Gitlab-Event", "Push Hook"),
    "gitea": ("X-Gitea-Event", "push"),
}
DELIVERY_HEADER = {
    "github": "X-GitHub-Delivery",
    "gitlab": "X-Gitlab-Event-UUID",
    "gitea": "X-Gitea-Delivery",
}


def delivery(
    host: CodeHost,
    secret: str | None,
    owner: str,
    name: str,
    sha: str,
    ref: str = "refs/heads/main",
    event: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers as ``host`` sends them; ``secret=None`` sends it unsigned."""
    body = json.dumps(SHAPES[host](owner, name, ref, sha)).encode()
    header, push = EVENT_HEADER[host]
    headers = {
        "Content-Type": "application/json",
        header: event or push,
        DELIVERY_HEADER[host]: str(uuid.uuid4()),
    }
    if secret is not None:
        headers.update(sign(host, secret, body))
    return body, headers
