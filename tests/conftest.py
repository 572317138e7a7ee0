"""Shared test configuration.

Fixtures that start real services live in ``tests/plugins/`` (one module per
service); each honours an environment variable that points at a running one.
What tests share besides fixtures lives in ``tests/harness/`` (``import harness.…``;
this directory is on ``sys.path`` because it holds this conftest, and the
benchmarks put it there themselves).
"""

pytest_plugins = [
    "plugins.postgres",
    "plugins.broker",
]
