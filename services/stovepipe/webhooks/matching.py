"""Which Queues a push is for: same repository, same branch.

Repositories are compared by a normal form: scheme, user, port, a trailing
``.git`` and slashes dropped, lower-cased, and ``git@host:owner/name`` read as
``host/owner/name``. A Queue whose ``source.repository`` is a local path or a
mirror URL matches a push when that normal form ends with the payload's
``/<owner>/<name>`` path; so a local mirror at ``/srv/git/acme/tools.git`` takes
pushes to ``acme/tools`` on any host. Only deliveries signed with a configured
secret get this far.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from stovepipe.config import QueueConfig
from stovepipe.config.queues import branch
from stovepipe.webhooks.payloads import Push

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")


def normal_form(location: str) -> str:
    """``location`` without scheme, credentials, port, ``.git`` or outer slashes, lower-cased."""
    text = location.strip()
    if "://" in text:
        parts = urlsplit(text)
        text = f"{parts.hostname or ''}/{parts.path}"
    elif (scp := _SCP_LIKE.match(text)) is not None and not text.startswith("/"):
        text = f"{scp['host']}/{scp['path']}"
    text = text.strip("/").removesuffix(".git").strip("/")
    return re.sub(r"/+", "/", text).lower()


def _matches(repository: str, names: Iterable[str]) -> bool:
    own = normal_form(repository)
    for name in names:
        theirs = normal_form(name)
        if not theirs:
            continue
        if own == theirs or own.endswith("/" + theirs):
            return True
    return False


def _paths(names: Iterable[str]) -> list[str]:
    """The ``owner/name`` paths among the names (a URL's path part, or a bare path)."""
    out: list[str] = []
    for name in names:
        form = normal_form(name)
        if "://" in name or _SCP_LIKE.match(name.strip()):
            form = form.split("/", 1)[1] if "/" in form else form
        if "/" in form:
            out.append(form)
    return out


def queues_for(push: Push, queues: Sequence[QueueConfig]) -> list[QueueConfig]:
    """The Queues that follow the pushed branch of the pushed repository."""
    pushed = branch(push.ref)
    candidates = list(dict.fromkeys([*push.repository_names, *_paths(push.repository_names)]))
    return [
        q
        for q in queues
        if branch(q.source.ref) == pushed and _matches(q.source.repository, candidates)
    ]
