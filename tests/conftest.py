"""Shared test configuration.

Fixtures that start real services live in ``tests/plugins/`` (one module per
service); each honours an environment variable that points at a running one.
What tests share besides fixtures lives in ``tests/harness/`` (``import harness.…``;
this directory is on ``sys.path`` because it holds this conftest, and the
benchmarks put it there themselves).

``make test`` runs the suite on several pytest-xdist workers, one test module per
unit of work (``--dist loadfile``), so a module's fault stack stays in one worker.
Each worker starts its own broker and PostgreSQL clusters (session fixtures are
per worker), on free ports. Under xdist the modules that take longest are handed
out first (``plugins/xdist_order.py``), so that no worker starts one of them when the
others are nearly done.
"""

pytest_plugins = [
    "plugins.postgres",
    "plugins.broker",
    "plugins.xdist_order",
    "plugins.hypothesis_profile",
]
