"""Building the ``stovepipe`` command tree loads neither the broker client nor the ORM.

Every ``stovepipe`` process builds the whole command tree before it runs its verb:
extension servers, client verbs (``gate``, ``history``), the health probe. Loading
SQLAlchemy, FastStream and aiokafka there cost about a second of CPU per process
start, paid by every extension restart and every CLI call, and by the test suite
hundreds of times. Only the verbs that use them import them, inside the verb.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sqlalchemy", "faststream", "aiokafka", "stovepipe.storage", "stovepipe.messaging")

_PROBE = """
import sys
import stovepipe.cli.main
{extra}
print(" ".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _loaded(extra: str = "") -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(extra=extra, heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.split()


def test_the_command_tree_loads_no_broker_client_and_no_orm() -> None:
    assert _loaded() == []


def test_the_git_and_runner_extension_servers_load_no_broker_client_and_no_orm() -> None:
    extra = (
        "import stovepipe.extensions.sourcecontrol.git\n"
        "import stovepipe.extensions.buildrunner.local\n"
        "import stovepipe.extensions.projectmapper.config\n"
    )
    assert _loaded(extra) == []


def test_a_verb_that_needs_the_broker_still_gets_it() -> None:
    """The control for the two above: ``dlq``'s own module does load the broker client."""
    assert "faststream" in _loaded("import stovepipe.runtime.dead_letters")
