"""The SourceControl extension: contract types, typed client, fake, reference server.

Core depends on ``SourceControl`` (the Protocol) and gets a
``SourceControlClient`` from its wiring; unit tests use
``fake.FakeSourceControl``; ``git`` is the reference server. URIs are minted
and read only by the server; everyone else treats them as opaque strings.
"""

from stovepipe.extensions.sourcecontrol.client import SourceControlClient
from stovepipe.extensions.sourcecontrol.contract import SourceControl
from stovepipe.extensions.sourcecontrol.errors import (
    Contended,
    GitFailed,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RepositoryUnusable,
    SourceControlError,
    TimedOut,
    Unavailable,
)
from stovepipe.extensions.sourcecontrol.model import (
    Ancestry,
    CommitInfo,
    PromoteResult,
    QueueSource,
)
from stovepipe.extensions.sourcecontrol.servicer import SERVICE_NAME, SourceControlServicer

__all__ = [
    "SERVICE_NAME",
    "Ancestry",
    "CommitInfo",
    "Contended",
    "GitFailed",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "PromoteResult",
    "QueueSource",
    "RepositoryUnusable",
    "SourceControl",
    "SourceControlClient",
    "SourceControlError",
    "SourceControlServicer",
    "TimedOut",
    "Unavailable",
]
