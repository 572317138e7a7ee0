"""Environment overrides: environment > file > defaults, and misdirected variables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config_factory import problems_of, queue
from stovepipe.config import config_from_mapping, default_config, load_config

FILE = {
    "storage": {"url": "sqlite+aiosqlite:///from-file.db"},
    "kafka": {"bootstrap_servers": "file-kafka:9092", "partitions": 2, "topic_prefix": "f."},
    "api": {"listen": "127.0.0.1:7000"},
    "queues": [queue()],
}


def test_the_shorthands_override_the_file() -> None:
    env = {
        "STOVEPIPE_DATABASE_URL": "postgresql+asyncpg://db.internal/stovepipe",
        "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2:9092",
        "STOVEPIPE_API_LISTEN": "0.0.0.0:6000",
    }
    config = config_from_mapping(FILE, env=env)
    assert config.storage.url == "postgresql+asyncpg://db.internal/stovepipe"
    assert config.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert config.api.listen == "0.0.0.0:6000"
    assert config.kafka.partitions == 2


def test_nested_variables_override_any_setting_outside_queues() -> None:
    env = {
        "STOVEPIPE__KAFKA__PARTITIONS": "12",
        "STOVEPIPE__WORKERS__BUILD__MAX_ATTEMPTS": "3",
        "STOVEPIPE__WORKERS__SWEEPER_STALE_AFTER_SECONDS": "60",
        "STOVEPIPE__EXTENSIONS__SOURCECONTROL__GIT__ADDRESS": "git-ext:50061",
        "stovepipe__api__listen": "127.0.0.1:7001",
    }
    config = config_from_mapping(FILE, env=env)
    assert config.kafka.partitions == 12
    assert config.kafka.topic_prefix == "f."
    assert config.workers.retry_policy("build").max_attempts == 3
    assert config.workers.retry_policy("build").backoff_max_s == 120
    assert config.workers.sweeper_stale_after_seconds == 60
    assert config.extensions.sourcecontrol["git"].address == "git-ext:50061"
    assert config.api.listen == "127.0.0.1:7001"


def test_precedence_is_environment_then_file_then_defaults() -> None:
    config = config_from_mapping(FILE, env={"STOVEPIPE__KAFKA__PARTITIONS": "9"})
    assert config.kafka.partitions == 9
    assert config.kafka.bootstrap_servers == "file-kafka:9092"
    assert config.kafka.fetch_max_wait_ms == 20


def test_the_nested_form_beats_a_shorthand_for_the_same_setting() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "shared:9092",
        "STOVEPIPE__KAFKA__BOOTSTRAP_SERVERS": "stovepipe-only:9092",
    }
    assert config_from_mapping(FILE, env=env).kafka.bootstrap_servers == "stovepipe-only:9092"


def test_empty_variables_count_as_unset() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "", "STOVEPIPE__KAFKA__PARTITIONS": ""}
    config = config_from_mapping(FILE, env=env)
    assert (config.kafka.bootstrap_servers, config.kafka.partitions) == ("file-kafka:9092", 2)


def test_a_whole_section_may_be_given_as_json_and_merges_key_by_key() -> None:
    env = {"STOVEPIPE__KAFKA": '{"partitions": 4, "fetch_max_wait_ms": 50}'}
    kafka = config_from_mapping(FILE, env=env).kafka
    assert (kafka.partitions, kafka.fetch_max_wait_ms, kafka.topic_prefix) == (4, 50, "f.")


def test_a_section_that_is_not_json_is_reported() -> None:
    assert problems_of(FILE, env={"STOVEPIPE__KAFKA": "partitions=3"}) == [
        "stovepipe.yaml: environment variable STOVEPIPE__KAFKA: a whole section must be given "
        "as JSON; set one key at a time with STOVEPIPE__KAFKA__<KEY>=<value>"
    ]


def test_queues_cannot_be_set_from_the_environment() -> None:
    assert problems_of(FILE, env={"STOVEPIPE__QUEUES__0__MAX_CONCURRENT": "4"}) == [
        "stovepipe.yaml: environment variable STOVEPIPE__QUEUES__0__MAX_CONCURRENT: queues are "
        "configured only in the file; remove this variable"
    ]


def test_an_unknown_section_is_reported_with_a_suggestion() -> None:
    assert problems_of(FILE, env={"STOVEPIPE__KAFAK__PARTITIONS": "4"}) == [
        "stovepipe.yaml: environment variable STOVEPIPE__KAFAK__PARTITIONS: unknown section "
        "'kafak'; did you mean 'kafka'? (sections: storage, kafka, api, extensions, workers, telemetry)"
    ]


def test_a_bad_value_names_the_variable_that_set_it() -> None:
    env = {"STOVEPIPE__KAFKA__PARTITIONS": "lots", "STOVEPIPE__KAFKA__PARTITONS": "4"}
    assert problems_of(FILE, env=env) == [
        "stovepipe.yaml: kafka.partitions: must be a whole number (set by environment variable "
        "STOVEPIPE__KAFKA__PARTITIONS)",
        "stovepipe.yaml: kafka.partitons: unknown key; did you mean 'partitions'? (set by "
        "environment variable STOVEPIPE__KAFKA__PARTITONS)",
    ]


def test_a_bad_database_url_from_the_environment_does_not_leak_its_password() -> None:
    problems = problems_of(FILE, env={"STOVEPIPE_DATABASE_URL": "mysql://app:pa55w0rd@db/x"})
    assert problems == [
        "stovepipe.yaml: storage.url: unsupported database 'mysql'; use PostgreSQL "
        "(postgresql+asyncpg://) or SQLite (sqlite+aiosqlite:///) (set by environment "
        "variable STOVEPIPE_DATABASE_URL)"
    ]


def test_load_config_applies_the_given_environment(tmp_path: Path) -> None:
    path = tmp_path / "stovepipe.yaml"
    path.write_text(yaml.safe_dump(FILE))
    assert load_config(path, env={}).api.listen == "127.0.0.1:7000"
    assert load_config(path, env={"STOVEPIPE_API_LISTEN": "[::1]:7002"}).api.listen == "[::1]:7002"


def test_load_config_and_default_config_read_the_process_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOVEPIPE__KAFKA__PARTITIONS", "5")
    path = tmp_path / "stovepipe.yaml"
    path.write_text(yaml.safe_dump(FILE))
    assert load_config(path).kafka.partitions == 5
    assert default_config().kafka.partitions == 5


def test_config_from_mapping_ignores_the_process_environment_unless_given_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STOVEPIPE__KAFKA__PARTITIONS", "5")
    monkeypatch.setenv("STOVEPIPE_DATABASE_URL", "postgresql+asyncpg://elsewhere/db")
    config = config_from_mapping(FILE)
    assert config.kafka.partitions == 2
    assert config.storage.url == "sqlite+aiosqlite:///from-file.db"


def test_default_config_takes_overrides_without_a_file() -> None:
    config = default_config(env={"KAFKA_BOOTSTRAP_SERVERS": "k:9092"})
    assert config.kafka.bootstrap_servers == "k:9092"
    assert config.storage.url == "sqlite+aiosqlite:///.stovepipe/stovepipe.db"
