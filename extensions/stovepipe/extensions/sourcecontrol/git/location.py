"""Where a repository lives, as given in a Queue's source, and how to show it safely.

A source's ``repository`` is either an absolute local path, which the server
reads in place, or a URL (``https``, ``http``, ``ssh``, ``git``, ``file`` or
scp-like ``user@host:path``), which it mirrors. URLs may carry credentials
(``https://token@host/...``): git is handed the URL as given, while every log
line, error message and repository id uses a form with the secret removed.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from stovepipe.extensions.sourcecontrol.errors import InvalidArgument
from stovepipe.extensions.sourcecontrol.names import quoted

_SCHEMES = frozenset({"https", "http", "ssh", "git", "file", "git+ssh", "ssh+git"})
_KEEP_USER = frozenset({"ssh", "git+ssh", "ssh+git"})
_SCP_LIKE = re.compile(
    r"(?P<user>[A-Za-z0-9._~-]+@)?(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<path>.+)"
)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_USERINFO = re.compile(r"(?i)\b(?!(?:ssh|git\+ssh|ssh\+git)://)([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_ANY_USERINFO = re.compile(r"(?<![^@/\s])[^@/\s]+@")
"""Starts only where a run begins, so a long run without ``@`` is scanned once, not once
per character."""
ECHO_LIMIT = 512
_TRAILING_RUN = re.compile(r"(?<![^@/\s])[^@/\s]+$")
"""How much of a refused repository string an error message quotes."""
_PASSWORD = re.compile(r"(?i)\b((?:ssh|git\+ssh|ssh\+git)://[^/:\s@]+):[^/\s@]+@")


@dataclass(frozen=True)
class Location:
    """A parsed repository location.

    ``argument`` is what git is given (it may hold credentials); ``display`` is
    safe to log and to return to a client; ``key`` identifies the repository
    in URIs and mirror names and does not change when credentials rotate.
    """

    argument: str
    display: str
    key: str
    remote: bool

    @property
    def path(self) -> Path:
        """The directory of a local repository."""
        return Path(self.argument)

    def redact(self, text: str) -> str:
        """``text`` (git output, say) with this location's credentials removed."""
        if self.argument != self.display:
            text = text.replace(self.argument, self.display)
        return redact_urls(text)


def parse_location(repository: str) -> Location:
    """``InvalidArgument`` for a relative path, an unsupported scheme or control characters."""
    if not repository:
        raise InvalidArgument("the source has no repository")
    if _UNSAFE.search(repository):
        raise InvalidArgument(
            f"repository {quoted(_userinfo_masked(repository))} contains control characters"
        )
    if repository.startswith("/"):
        canonical = posixpath.normpath(repository)
        return Location(repository, repository, _key(canonical), remote=False)
    if "::" in repository.split("/", 1)[0]:
        raise InvalidArgument(
            f"repository {quoted(_userinfo_masked(repository))} uses a git remote helper "
            "(<transport>::<address>), which this server does not run"
        )
    if "://" in repository:
        return _url(repository)
    scp = _SCP_LIKE.fullmatch(repository)
    if scp is not None and "@" in scp["path"]:
        raise InvalidArgument(
            f"repository {quoted(_userinfo_masked(repository))} looks like a host:path address "
            "with credentials in it; give credentials in an https:// or ssh:// URL instead"
        )
    if scp is not None:
        canonical = f"ssh://{scp['host'].lower()}/{scp['path'].rstrip('/')}"
        return Location(repository, repository, _key(canonical), remote=True)
    raise InvalidArgument(
        f"repository {quoted(_userinfo_masked(repository))} is neither an absolute path nor a URL "
        f"({', '.join(sorted(_SCHEMES))} or user@host:path)"
    )


def redact_urls(text: str) -> str:
    """Remove credentials from every URL in ``text``."""
    return _PASSWORD.sub(r"\1@", _USERINFO.sub(r"\1", text))


def _userinfo_masked(text: str) -> str:
    """``text`` with anything that could be a user or password (before an ``@``) hidden,
    for echoing input that did not even parse. Only a bounded head is quoted, so a
    huge argument costs no more than a short one."""
    if len(text) > ECHO_LIMIT:  # the cut may fall inside user information: hide its tail
        text = _TRAILING_RUN.sub("***", text[:ECHO_LIMIT]) + "..."
    return _ANY_USERINFO.sub("***@", redact_urls(text))


def _url(repository: str) -> Location:
    try:
        parts = urlsplit(repository)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"repository {quoted(_userinfo_masked(repository))}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidArgument(
            f"repository {quoted(_userinfo_masked(repository))} uses scheme {quoted(scheme)}; "
            f"supported: {', '.join(sorted(_SCHEMES))}"
        )
    if scheme != "file" and not parts.hostname:
        raise InvalidArgument(f"repository {quoted(_userinfo_masked(repository))} names no host")
    if scheme == "file" and (parts.netloc or not parts.path.startswith("/")):
        raise InvalidArgument(
            f"repository {quoted(_userinfo_masked(repository))} is not of the form file:///absolute/path"
        )
    hostname = parts.hostname or ""
    host = (f"[{hostname}]" if ":" in hostname else hostname) + (
        f":{port}" if port is not None else ""
    )
    shown_user = parts.username if scheme in _KEEP_USER and parts.username else None
    display = urlunsplit(parts._replace(netloc=f"{shown_user}@{host}" if shown_user else host))
    path = posixpath.normpath(parts.path) if scheme == "file" else parts.path.rstrip("/")
    canonical = urlunsplit((scheme, host, path, parts.query, ""))
    return Location(repository, display, _key(canonical), remote=True)


def _key(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
