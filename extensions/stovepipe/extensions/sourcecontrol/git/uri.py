"""The URIs this server mints: ``git+<repository-key>#<branch>@<commit>``.

``repository-key`` is 16 hex digits derived from the repository's
credential-free location (``Location.key``), ``branch`` the short name of the
Queue's ref and ``commit`` the full object name (40 hex digits, or 64 for a
SHA-256 repository). For example::

    git+3f9a0c1d2e4b5a67#main@5d41402abc4b2a76b9719d911017c592aa5e1c3b

A URI names one commit as seen on one ref of one repository, so the same
commit on two branches has two URIs. Only this package reads them; everyone
else compares them for equality.
"""

from __future__ import annotations

import re

from stovepipe.extensions.sourcecontrol.errors import InvalidArgument
from stovepipe.extensions.sourcecontrol.git.location import Location
from stovepipe.extensions.sourcecontrol.names import branch_name, quoted

PREFIX = "git+"
MAX_URI_LENGTH = 512
_URI = re.compile(
    r"git\+(?P<key>[0-9a-f]{16})#(?P<branch>.+)@(?P<commit>[0-9a-f]{40}|[0-9a-f]{64})"
)


def mint(location: Location, branch: str, commit: str) -> str:
    return f"{PREFIX}{location.key}#{branch}@{commit}"


def commit_of(uri: str, *, location: Location, branch: str, field: str) -> str:
    """The commit ``uri`` names, after checking it was minted for this repository and branch.

    ``InvalidArgument`` for anything else, with a message that says which part is wrong.
    """
    match = _URI.fullmatch(uri) if len(uri) <= MAX_URI_LENGTH else None
    if match is None:
        hint = "it is empty" if not uri else "it is not of the form git+<repository>#<ref>@<sha>"
        raise InvalidArgument(
            f"{field} {quoted(uri)} was not minted by the git SourceControl: {hint}"
        )
    if match["key"] != location.key:
        raise InvalidArgument(
            f"{field} {quoted(uri)} belongs to another repository than {location.display} "
            f"(key {location.key}); URIs do not carry over between repositories"
        )
    try:
        minted_branch = branch_name(match["branch"], what=field)
    except InvalidArgument:
        raise InvalidArgument(f"{field} {quoted(uri)} names a malformed branch") from None
    if minted_branch != branch:
        raise InvalidArgument(
            f"{field} {quoted(uri)} was minted for branch {quoted(minted_branch)}, "
            f"not for {quoted(branch)} which this queue follows"
        )
    return match["commit"]
