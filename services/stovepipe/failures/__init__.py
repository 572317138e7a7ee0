"""One error taxonomy for every stage: retryable or not.

Stages either raise :class:`Retryable` / :class:`NonRetryable` themselves or let
errors from extensions (gRPC), storage and the domain propagate; :func:`classify`
maps every one of them to a :class:`Verdict` in one place, so the messaging
layer alone decides between "try again later" and "dead-letter now".

Hierarchy::

    StovepipeError
    ├── Retryable        transient: unavailable, timeout, version race, read-after-write lag
    └── NonRetryable     permanent: malformed payload, unknown Queue, broken invariant
"""

from stovepipe.failures.classify import (
    KNOWN_FAILURES,
    NonRetryable,
    Retryable,
    Verdict,
    classify,
    grpc_code_verdict,
    short_reason,
)
from stovepipe.failures.policy import Action, Decision, OnFailure, RetryPolicy, decide

__all__ = [
    "KNOWN_FAILURES",
    "Action",
    "Decision",
    "NonRetryable",
    "OnFailure",
    "RetryPolicy",
    "Retryable",
    "Verdict",
    "classify",
    "decide",
    "grpc_code_verdict",
    "short_reason",
]
