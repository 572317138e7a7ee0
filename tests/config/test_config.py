"""Configuration loading, validation errors with field paths, env overrides, secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stovepipe.config import (
    ConfigError,
    TokenConfig,
    UnknownQueue,
    config_from_mapping,
    load_config,
    resolve_secret,
)

ROOT = Path(__file__).resolve().parents[2]


def _queue(**overrides: Any) -> dict[str, Any]:
    queue: dict[str, Any] = {
        "name": "mono/main",
        "source": {"repository": "/repo"},
        "build": {"targets": [{"name": "unit", "command": "make test"}]},
    }
    queue.update(overrides)
    return queue


def _problems(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        config_from_mapping(data, "stovepipe.yaml")
    return str(exc.value)


def test_the_example_file_is_valid() -> None:
    config = load_config(ROOT / "stovepipe.example.yaml", env={})
    assert [q.name for q in config.queues] == ["monorepo/main", "tools/main"]
    assert config.queue("monorepo/main").max_concurrent == 2
    assert config.queue("tools/main").depends_on == ("monorepo/main",)


def test_defaults_fill_in_a_minimal_queue() -> None:
    queue = config_from_mapping({"queues": [_queue()]}).queue("mono/main")
    assert (queue.source.ref, queue.source.extension, queue.build.runner) == (
        "main",
        "git",
        "local",
    )
    assert queue.max_concurrent == 1 and queue.build.targets[0].timeout_seconds == 600


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"queues": [_queue(name="Mono/Main")]},
            "queues[0] (Mono/Main).name: queue name 'Mono/Main' contains 'M'",
        ),
        ({"queues": [_queue(), _queue()]}, "queue name 'mono/main' is used more than once"),
        ({"queues": [_queue(max_concurent=2)]}, "queues[0] (mono/main).max_concurent: unknown key"),
        (
            {"queues": [_queue(poll={"schedule": "every tuesday"})]},
            "queues[0] (mono/main).poll.schedule: Value error, 'every tuesday' is not a valid cron",
        ),
        (
            {
                "queues": [
                    _queue(
                        build={"targets": [{"name": "unit", "command": "x", "timeout_seconds": 0}]}
                    )
                ]
            },
            "queues[0] (mono/main).build.targets[0] (unit).timeout_seconds: Input should be greater than 0",
        ),
        (
            {"api": {"tokens": [{"name": "p", "role": "ingest", "token": "s3cret"}]}},
            "a literal 'token' is not allowed",
        ),
        (
            {"queues": [_queue(depends_on=["nope/main"])]},
            "depends_on 'nope/main' is not a configured queue",
        ),
        (
            {"queues": [_queue(name="a", depends_on=["b"]), _queue(name="b", depends_on=["a"])]},
            "depends_on forms a cycle: a -> b -> a",
        ),
        (
            {"queues": [_queue(promotion_ref="main")]},
            "promotion_ref 'main' must differ from source.ref",
        ),
        (
            {"queues": [_queue(max_concurrent=0)]},
            "queues[0] (mono/main).max_concurrent: Input should be greater than or equal to 1",
        ),
    ],
)
def test_errors_name_the_field_path_and_the_problem(data: dict[str, Any], expected: str) -> None:
    problems = _problems(data)
    assert problems.startswith("stovepipe.yaml: ")
    assert expected.removeprefix("").replace("Value error, ", "") in problems


def test_every_problem_is_listed(tmp_path: Path) -> None:
    problems = _problems({"queues": [_queue(name="Bad"), _queue(max_concurrent=0)]})
    assert "queues[0] (Bad).name" in problems and "queues[1] (mono/main).max_concurrent" in problems


def test_yaml_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "stovepipe.yaml"
    path.write_text("queues:\n  - name: a\n   bad: [\n")
    with pytest.raises(ConfigError, match=r"line 3, column \d+: YAML syntax error"):
        load_config(path, env={})


def test_missing_and_empty_files_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"file not found; copy stovepipe\.example\.yaml"):
        load_config(tmp_path / "nope.yaml", env={})
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="the file is empty"):
        load_config(empty, env={})


def test_environment_overrides_the_file() -> None:
    env = {
        "STOVEPIPE_DATABASE_URL": "postgresql+asyncpg://db/stovepipe",
        "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        "STOVEPIPE_API_LISTEN": "0.0.0.0:6000",
        "STOVEPIPE__KAFKA__PARTITIONS": "12",
        "STOVEPIPE__QUEUES__X": "ignored",
    }
    config = config_from_mapping({"kafka": {"partitions": 2}, "queues": [_queue()]}, env=env)
    assert config.storage.url == "postgresql+asyncpg://db/stovepipe"
    assert (config.kafka.bootstrap_servers, config.kafka.partitions) == ("kafka:9092", 12)
    assert config.api.listen == "0.0.0.0:6000"


def test_unknown_queue_lists_the_known_ones() -> None:
    config = config_from_mapping({"queues": [_queue()]})
    with pytest.raises(UnknownQueue, match=r"unknown queue 'x/main' \(known: mono/main\)"):
        config.queue("x/main")


def test_secrets_resolve_from_env_or_file_and_never_show(tmp_path: Path) -> None:
    by_env = TokenConfig(name="poller", role="ingest", token_env="POLLER_TOKEN")
    assert resolve_secret(by_env, env={"POLLER_TOKEN": "hunter2"}) == "hunter2"
    with pytest.raises(ConfigError, match="POLLER_TOKEN is not set") as exc:
        resolve_secret(by_env, env={})
    assert "hunter2" not in str(exc.value)
    secret_file = tmp_path / "token"
    secret_file.write_text("file-secret\n")
    by_file = TokenConfig(name="gate", role="read", token_file=str(secret_file))
    assert resolve_secret(by_file, env={}) == "file-secret"
    config = config_from_mapping({"api": {"tokens": [by_file.model_dump()]}})
    assert "file-secret" not in repr(config)
