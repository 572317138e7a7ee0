"""What an extension author needs to test a server against Stovepipe's contracts.

:mod:`stovepipe.testing.contracts` holds the contract suites (pytest test
classes) a SourceControl or BuildRunner implementation runs against itself;
:func:`until` waits on a condition with a deadline. Stovepipe's own test
harness (fault injection, throwaway PostgreSQL, live stacks) is not part of
the package: it lives in the repository's ``tests/harness``.
"""

from stovepipe.testing.waiting import until

__all__ = ["until"]
