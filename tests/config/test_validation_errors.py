"""Every class of mistake is reported at its field path, with what to do about it."""

from __future__ import annotations

from typing import Any

import pytest

from harness.config_factory import problems_of, queue
from stovepipe.config import config_from_mapping

ONE_TARGET_TIMEOUT_ZERO = {"targets": [{"name": "unit", "command": "x", "timeout_seconds": 0}]}
SASL_REFUSED = (
    "a literal password is not allowed in the file; name the environment variable that "
    "holds it with sasl_password_env, or a file with sasl_password_file"
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {"queues": [queue("Mono/Main")]},
            "queues[0] (Mono/Main).name: queue name 'Mono/Main' contains 'M'; allowed are "
            "lower-case letters, digits, '.', '_', '-' and '/'",
            id="bad-queue-name",
        ),
        pytest.param(
            {"queues": [queue("/main")]},
            "queues[0] (/main).name: queue name '/main' has an empty segment; '/' must "
            "separate non-empty parts",
            id="empty-segment",
        ),
        pytest.param(
            {"queues": [queue(), queue("b/main"), queue()]},
            "queues[2] (mono/main).name: queue name 'mono/main' is already used by queues[0]",
            id="duplicate-queue",
        ),
        pytest.param(
            {"queues": [queue(max_concurent=2)]},
            "queues[0] (mono/main).max_concurent: unknown key; did you mean 'max_concurrent'?",
            id="typo-in-queue",
        ),
        pytest.param(
            {"kafak": {"partitions": 2}},
            "kafak: unknown key; did you mean 'kafka'?",
            id="typo-in-section",
        ),
        pytest.param(
            {"queues": [queue(colour="red")]},
            "queues[0] (mono/main).colour: unknown key (check the spelling against "
            "stovepipe.example.yaml)",
            id="unknown-key-without-suggestion",
        ),
        pytest.param(
            {"queues": [queue(), queue("b/main", build=ONE_TARGET_TIMEOUT_ZERO)]},
            "queues[1] (b/main).build.targets[0] (unit).timeout_seconds: must be greater than 0",
            id="timeout-zero",
        ),
        pytest.param(
            {"queues": [queue(build={"targets": []})]},
            "queues[0] (mono/main).build.targets: needs at least 1 entry",
            id="no-targets",
        ),
        pytest.param(
            {
                "queues": [
                    queue(
                        build={
                            "targets": [
                                {"name": "unit", "command": "a"},
                                {"name": "unit", "command": "b"},
                            ]
                        }
                    )
                ]
            },
            "queues[0] (mono/main).build.targets[1] (unit).name: target name 'unit' is already "
            "used by targets[0]",
            id="duplicate-target",
        ),
        pytest.param(
            {"api": {"tokens": [{"name": "p", "role": "ingest", "token": "s3cret"}]}},
            "api.tokens[0] (p).token: a literal token is not allowed in the file; name the "
            "environment variable that holds it with token_env, or a file with token_file",
            id="literal-token",
        ),
        pytest.param(
            {"api": {"tokens": [{"name": "p", "role": "ingest"}]}},
            "api.tokens[0] (p): give exactly one of token_env or token_file",
            id="token-without-source",
        ),
        pytest.param(
            {"api": {"tokens": [{"name": "p", "role": "writer", "token_env": "T"}]}},
            "api.tokens[0] (p).role: must be 'ingest', 'read' or 'admin'",
            id="unknown-role",
        ),
        pytest.param(
            {"queues": [queue(promotion_ref="main")]},
            "queues[0] (mono/main).promotion_ref: must differ from source.ref ('main'): "
            "Stovepipe would move the branch it validates",
            id="promotion-equals-ref",
        ),
        pytest.param(
            {"queues": [queue(promotion_ref="refs/heads/main")]},
            "queues[0] (mono/main).promotion_ref: must differ from source.ref ('main')",
            id="promotion-equals-ref-spelt-in-full",
        ),
        pytest.param(
            {
                "queues": [
                    queue("a/main", promotion_ref="verified"),
                    queue(
                        "a/next",
                        source={"repository": "/srv/git/mono.git", "ref": "next"},
                        promotion_ref="verified",
                    ),
                ]
            },
            "queues[1] (a/next).promotion_ref: queues[0] already promotes 'verified' in the "
            "same repository",
            id="shared-promotion-ref",
        ),
        pytest.param(
            {"queues": [queue(max_concurrent=0)]},
            "queues[0] (mono/main).max_concurrent: must be at least 1",
            id="max-concurrent-zero",
        ),
        pytest.param(
            {"queues": [queue(source={"repository": "/r", "extension": "github"})]},
            "queues[0] (mono/main).source.extension: 'github' is not declared under "
            "extensions.sourcecontrol (declared: git)",
            id="undeclared-sourcecontrol",
        ),
        pytest.param(
            {
                "extensions": {"buildrunner": {"buildkite": {"address": "bk:50062"}}},
                "queues": [queue()],
            },
            "queues[0] (mono/main).build.runner: 'local' is not declared under "
            "extensions.buildrunner (declared: buildkite)",
            id="declaring-a-kind-replaces-its-default",
        ),
        pytest.param(
            {"api": {"listen": "localhost"}},
            "api.listen: 'localhost' is not an address; expected host:port such as 127.0.0.1:50051",
            id="listen-without-port",
        ),
        pytest.param(
            {"kafka": {"bootstrap_servers": "PLAINTEXT://kafka:9092"}},
            "kafka.bootstrap_servers: 'PLAINTEXT://kafka:9092': drop the scheme; expected "
            "host:port such as kafka:9092",
            id="bootstrap-with-scheme",
        ),
        pytest.param(
            {"storage": {"url": "mysql://db/stovepipe"}},
            "storage.url: unsupported database 'mysql'; use PostgreSQL (postgresql+asyncpg://) "
            "or SQLite (sqlite+aiosqlite:///)",
            id="unsupported-database",
        ),
        pytest.param(
            {"workers": {"record": {"backoff_initial_seconds": 100, "backoff_max_seconds": 50}}},
            "workers.record.backoff_initial_seconds: must not exceed backoff_max_seconds",
            id="backoff-order",
        ),
        pytest.param(
            {"queues": [queue(max_concurrent="two")]},
            "queues[0] (mono/main).max_concurrent: must be a whole number",
            id="wrong-type",
        ),
        pytest.param(
            {"queues": {"mono/main": {}}},
            "queues: must be a list",
            id="queues-as-a-mapping",
        ),
    ],
)
def test_each_problem_names_its_field_path_and_what_is_wrong(
    data: dict[str, Any], expected: str
) -> None:
    problems = problems_of(data)
    assert any(line.startswith(f"stovepipe.yaml: {expected}") for line in problems), problems


def test_a_literal_secret_is_refused_at_its_field() -> None:
    assert problems_of({"kafka": {"sasl_password": "hunter2"}}) == [
        f"stovepipe.yaml: kafka.sasl_password: {SASL_REFUSED}"
    ]


def test_a_refused_key_hides_no_other_problem() -> None:
    problems = problems_of(
        {"kafka": {"sasl_password": "hunter2"}, "queues": [queue(max_concurrent=0)]}
    )
    assert problems == [
        f"stovepipe.yaml: kafka.sasl_password: {SASL_REFUSED}",
        "stovepipe.yaml: queues[0] (mono/main).max_concurrent: must be at least 1",
    ]


def test_a_refused_key_set_from_the_environment_names_the_variable() -> None:
    env = {"STOVEPIPE__KAFKA__SASL_PASSWORD": "hunter2"}
    assert problems_of({}, env=env) == [
        f"stovepipe.yaml: kafka.sasl_password: {SASL_REFUSED} (set by environment variable "
        "STOVEPIPE__KAFKA__SASL_PASSWORD)"
    ]


def test_every_problem_is_listed_at_once() -> None:
    """Rules across sections run over the entries that are valid on their own, so they are
    reported with the field errors (a duplicate of an invalid entry shows once it is valid)."""
    problems = problems_of(
        {
            "kafka": {"partitions": 0},
            "queues": [
                queue("Bad"),
                queue(max_concurrent=0),
                queue(),
                queue(),
                queue("b/main", source={"repository": "/r", "extension": "github"}),
            ],
        }
    )
    assert problems == [
        "stovepipe.yaml: kafka.partitions: must be at least 1",
        "stovepipe.yaml: queues[0] (Bad).name: queue name 'Bad' contains 'B'; allowed are "
        "lower-case letters, digits, '.', '_', '-' and '/'",
        "stovepipe.yaml: queues[1] (mono/main).max_concurrent: must be at least 1",
        "stovepipe.yaml: queues[3] (mono/main).name: queue name 'mono/main' is already used "
        "by queues[2]",
        "stovepipe.yaml: queues[4] (b/main).source.extension: 'github' is not declared under "
        "extensions.sourcecontrol (declared: git)",
    ]


def test_rules_across_queues_are_reported_together() -> None:
    problems = problems_of(
        {
            "queues": [
                queue(promotion_ref="verified"),
                queue(
                    promotion_ref="verified",
                    build={"runner": "ci", "targets": [{"name": "u", "command": "x"}]},
                ),
                queue("b/main", promotion_ref="refs/heads/verified"),
            ]
        }
    )
    assert problems == [
        "stovepipe.yaml: queues[1] (mono/main).name: queue name 'mono/main' is already used "
        "by queues[0]",
        "stovepipe.yaml: queues[1] (mono/main).build.runner: 'ci' is not declared under "
        "extensions.buildrunner (declared: local)",
        "stovepipe.yaml: queues[1] (mono/main).promotion_ref: queues[0] already promotes "
        "'verified' in the same repository",
        "stovepipe.yaml: queues[2] (b/main).promotion_ref: queues[0] already promotes "
        "'verified' in the same repository",
    ]


def test_paths_use_list_indexes_not_dotted_numbers() -> None:
    problems = problems_of({"queues": [queue(), queue("b/main", max_concurrent=0)]})
    assert problems == ["stovepipe.yaml: queues[1] (b/main).max_concurrent: must be at least 1"]
    assert "queues.1" not in problems[0]


def test_an_invalid_list_entry_is_not_also_reported_as_a_short_list() -> None:
    problems = problems_of({"queues": [queue(build={"targets": ["make test"]})]})
    assert problems == [
        "stovepipe.yaml: queues[0] (mono/main).build.targets[0]: must be a mapping of settings "
        "(key: value)"
    ]


def test_messages_never_echo_a_value_that_may_be_a_secret() -> None:
    pasted = "ghp_0123456789abcdefSECRET"
    problems = "\n".join(
        problems_of(
            {
                "api": {
                    "tokens": [
                        {"name": "a", "role": "read", "token": pasted},
                        {"name": "b", "role": "read", "token_env": pasted + "-x"},
                    ]
                },
                "storage": {"url": f"oracle://app:{pasted}@db/x"},
            }
        )
    )
    assert "api.tokens[0] (a).token: a literal token is not allowed" in problems
    assert "api.tokens[1] (b).token_env: must be the name of an environment variable" in problems
    assert "storage.url: unsupported database 'oracle'" in problems
    assert pasted not in problems


def test_credentials_in_a_repository_url_are_refused() -> None:
    problems = problems_of(
        {"queues": [queue(source={"repository": "https://bot:hunter2@git.example.com/m.git"})]}
    )
    assert problems == [
        "stovepipe.yaml: queues[0] (mono/main).source.repository: the URL embeds a password; "
        "the file must not hold secrets (use an SSH key or a git credential helper)"
    ]


def test_kafka_timing_reaches_the_consumers_and_a_heartbeat_must_fit_the_session() -> None:
    from stovepipe.config import config_from_mapping
    from stovepipe.runtime.wiring import kafka_settings

    timing = {
        "bootstrap_servers": "127.0.0.1:9092",
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 1_500,
        "graceful_timeout_seconds": 12.5,
        "redelivery_pause_ms": 250,
        "idle_fetch_max_wait_ms": 300,
        "idle_after_seconds": 2.5,
    }
    config = config_from_mapping({"kafka": timing, "queues": [queue()]}, "stovepipe.yaml")
    settings = kafka_settings(config, "stovepipe-test")
    assert (
        settings.session_timeout_ms,
        settings.heartbeat_interval_ms,
        settings.graceful_timeout_s,
        settings.redelivery_pause_ms,
        settings.idle_fetch_max_wait_ms,
        settings.idle_after_s,
    ) == (6_000, 1_500, 12.5, 250, 300, 2.5)
    plain = {"kafka": {"bootstrap_servers": "127.0.0.1:9092"}, "queues": [queue()]}
    default = kafka_settings(config_from_mapping(plain, "y"), "stovepipe-test")
    assert default.idle_after_s == 30.0
    never = {"kafka": {**timing, "idle_after_seconds": 0}, "queues": [queue()]}
    assert any("idle_after_seconds" in line for line in problems_of(never))
    slow_heart = {"kafka": {**timing, "heartbeat_interval_ms": 6_000}, "queues": [queue()]}
    assert any(
        "heartbeat_interval_ms (6000) must be below session_timeout_ms (6000)" in line
        for line in problems_of(slow_heart)
    )


WEBHOOK = {"name": "bot", "kind": "webhook", "url": "https://bots.example/h", "secret_env": "WH"}


@pytest.mark.parametrize(
    ("hook", "expected"),
    [
        ({**WEBHOOK, "url": None}, "a webhook hook needs url"),
        (
            {"name": "bot", "kind": "webhook", "url": "https://b/h"},
            "needs secret_env or secret_file",
        ),
        ({**WEBHOOK, "secret_file": "/s"}, "give at most one of secret_env or secret_file"),
        ({**WEBHOOK, "secret_env": None, "secret_file": "rel/key"}, "must be an absolute path"),
        ({**WEBHOOK, "url": "ftp://b/h"}, "is not an http(s) URL"),
        ({**WEBHOOK, "url": "https://u:p@b/h"}, "embeds credentials"),
        ({**WEBHOOK, "events": "sometimes"}, "events"),
        ({"name": "t", "kind": "kafka"}, "a kafka hook needs topic"),
        ({"name": "c", "kind": "chat"}, "'chat' is not declared under extensions.hooks"),
        ({**WEBHOOK, "backoff_initial_seconds": 10, "backoff_max_seconds": 1}, "must not exceed"),
    ],
)
def test_a_hook_that_cannot_work_is_refused_saying_why(hook: dict[str, Any], expected: str) -> None:
    problems = problems_of({"queues": [queue(hooks=[{k: v for k, v in hook.items() if v}])]})
    assert problems and all("hooks" in p for p in problems), problems
    assert any(expected in p for p in problems), problems


def test_hook_names_are_unique_within_a_queue() -> None:
    problems = problems_of({"queues": [queue(hooks=[WEBHOOK, {**WEBHOOK, "url": "https://o/h"}])]})
    assert len(problems) == 1 and "bot" in problems[0], problems
    config = config_from_mapping(
        {"queues": [queue(hooks=[WEBHOOK, {"name": "c", "kind": "log"}])]}, source="t"
    )
    assert [h.name for h in config.queues[0].hooks] == ["bot", "c"]
