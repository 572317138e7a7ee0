"""Shared test configuration.

Fixtures that start real services live in ``tests/plugins/`` (one module per
service); each honours an environment variable that points at a running one.
"""

pytest_plugins = [
    "plugins.harness_path",
    "plugins.postgres",
    "plugins.broker",
]
