"""Classify a failed conversation with a remote (fetch, ls-remote, push) by git's words.

Git reports every failure with exit code 128, so its (English, see
``process.git_environment``) message is all there is. The rule is biased
towards retrying: a failure is permanent only when git says something that
retrying cannot change (no such repository, no such branch, credentials
refused); everything else, known transient or not recognised, is
``Unavailable`` and will be retried a bounded number of times.
"""

from __future__ import annotations

import re

from stovepipe.extensions.sourcecontrol.errors import (
    NotFound,
    RepositoryUnusable,
    SourceControlError,
    Unavailable,
)
from stovepipe.extensions.sourcecontrol.git.location import Location

_MISSING_REF = re.compile(r"(?i)couldn't find remote ref")
_PERMANENT = re.compile(
    r"(?i)("
    r"does not appear to be a git repository|not a git repository|repository .*not found|"
    r"no such repository|returned error: 40[0-9]|authentication failed|"
    r"could not read (username|password)|terminal prompts disabled|permission denied|"
    r"host key verification failed|access denied|dubious ownership|"
    r"protected branch|hook declined|denied to|currently checked out"
    r")"
)
MAX_DETAIL = 400


def remote_failure(action: str, location: Location, stderr: str) -> SourceControlError:
    """The error to raise for ``action`` (e.g. "fetching main") that failed with ``stderr``."""
    detail = summarize(location.redact(stderr))
    if _MISSING_REF.search(stderr):
        return NotFound(f"{action} from {location.display}: the remote has no such branch")
    if _PERMANENT.search(stderr):
        return RepositoryUnusable(
            f"{action} from {location.display} was refused: {detail}; check that the "
            "repository exists and that this server's credentials may use it"
        )
    return Unavailable(f"{action} from {location.display} failed; retry later: {detail}")


def summarize(text: str) -> str:
    """Git's message on one line, cut to a length a log and a status detail can carry."""
    joined = "; ".join(line.strip() for line in text.splitlines() if line.strip())
    return joined if len(joined) <= MAX_DETAIL else joined[: MAX_DETAIL - 3] + "..."
