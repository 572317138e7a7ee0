"""The checker the deployment tests judge commands with rejects what ``stovepipe`` rejects.

Every deployment test that says "this command is a real verb" rests on
:func:`harness.stovepipe_argv.parse`; if it accepted anything, those tests would
prove nothing. Each case here is a way a deployment file goes stale when the CLI
changes: a renamed verb, a stage that is not registered (or every stage in one
process, which a deployment never runs), an option a verb does
not take or a value of the wrong type, an option a reference extension server
does not know, or one it requires left out.
"""

from __future__ import annotations

import pytest

from harness.stovepipe_argv import InvalidInvocation, parse, passthrough_verbs
from stovepipe.runtime.registry import STAGE_NAMES

CONFIG = ["--config", "/etc/stovepipe/stovepipe.yaml"]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["serve", *CONFIG], "no command 'serve'"),
        (["db", "migrate"], "no command 'migrate'"),
        (["db"], "a command is missing"),
        (["worker", "compile", *CONFIG], "not a registered stage"),
        (["worker", "all", *CONFIG], "one process per stage"),
        (["worker", "process", "--replicas", "3"], "--replicas"),
        (["worker", "process", "--health-port", "eighty"], "eighty"),
        (["ext", "git", "--listen", "0.0.0.0:50061", "--bogus", "1"], "no option --bogus"),
        (["ext", "local-runner", "--listen", "0.0.0.0:50062"], "--source-control"),
    ],
)
def test_a_stale_command_is_refused_with_the_reason(argv: list[str], says: str) -> None:
    with pytest.raises(InvalidInvocation) as refused:
        parse(argv)
    assert says in str(refused.value), str(refused.value)


def test_real_commands_parse_into_their_verb_and_options() -> None:
    for stage in STAGE_NAMES:
        invocation = parse(["worker", stage, *CONFIG, "--health-port", "8081"])
        assert (invocation.verb, invocation.params["stage"]) == ("worker", stage)
        assert invocation.params["health_port"] == 8081
    listen = ["--listen", "0.0.0.0:50062"]
    runner = parse(["ext", "local-runner", *listen, "--source-control", "g:1", "--work-dir", "/w"])
    assert runner.verb == "ext local-runner"
    assert "--source-control" in runner.passthrough
    assert parse(["db", "upgrade", *CONFIG]).verb == "db upgrade"


def test_every_handed_through_server_is_known() -> None:
    """The servers whose options are read from their own --help are the four
    reference extension servers; a new one is checked the same way."""
    assert {" ".join(p) for p in passthrough_verbs()} >= {
        "ext git",
        "ext local-runner",
        "ext hooks",
        "ext project-mapper",
    }
