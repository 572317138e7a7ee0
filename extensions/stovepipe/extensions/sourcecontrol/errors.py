"""Errors a SourceControl implementation raises, and their one mapping to gRPC codes.

Hierarchy::

    SourceControlError            (code: the gRPC status a server answers with)
    ├── InvalidArgument      INVALID_ARGUMENT     a malformed source, ref name or URI, or a
    │                                             URI minted for another repository or ref
    ├── NotFound             NOT_FOUND            an unknown ref or commit
    ├── PermissionDenied     PERMISSION_DENIED    a repository the server does not serve, or
    │                                             a promotion ref it is not configured to move
    ├── RepositoryUnusable   FAILED_PRECONDITION  the repository is missing, is not a
    │                                             repository, or refuses us (credentials)
    ├── Unavailable          UNAVAILABLE          a transient failure talking to a remote
    ├── TimedOut             DEADLINE_EXCEEDED    a git command outlived its budget
    ├── Contended            ABORTED              a ref kept changing under a compare-and-swap
    └── GitFailed            INTERNAL             git failed in a way nobody planned for

Messages are meant for the operator who reads them in a log or a dead-letter
header: they say what was asked, what was wrong and, where it helps, what to
do; they never carry credentials. Servers turn an error into its status code;
in-process fakes turn it into the ``grpc.aio.AioRpcError`` a client would
have raised (``as_rpc_error``).
"""

from __future__ import annotations

import grpc


class SourceControlError(Exception):
    """Base of the errors an implementation raises on purpose."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(SourceControlError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(SourceControlError):
    code = grpc.StatusCode.NOT_FOUND


class PermissionDenied(SourceControlError):
    code = grpc.StatusCode.PERMISSION_DENIED


class RepositoryUnusable(SourceControlError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(SourceControlError):
    code = grpc.StatusCode.UNAVAILABLE


class TimedOut(SourceControlError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Contended(SourceControlError):
    code = grpc.StatusCode.ABORTED


class GitFailed(SourceControlError):
    code = grpc.StatusCode.INTERNAL


def as_rpc_error(error: SourceControlError) -> grpc.aio.AioRpcError:
    """The error a gRPC client would see had ``error`` been raised behind a server."""
    return rpc_error(error.code, str(error))


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """Build an ``AioRpcError`` by hand, for fakes that stand in for a client."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)
