"""Loading files: the example, defaults, YAML errors, missing and empty files, line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config_factory import queue
from stovepipe.config import (
    ConfigError,
    StovepipeConfig,
    config_from_mapping,
    default_config,
    load_config,
)
from stovepipe.runtime.registry import retrying_stage_names

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stovepipe.yaml"
    path.write_text(text)
    return path


def test_the_example_file_is_valid_and_means_what_its_comments_say() -> None:
    config = load_config(ROOT / "stovepipe.example.yaml", env={})
    assert config.queue_names == ("monorepo/main", "tools/main")
    full = config.queue("monorepo/main")
    assert full.promotion_ref == "verified-main"
    assert full.max_concurrent == 2
    assert [t.timeout_seconds for t in full.build.targets] == [900, 300]
    assert [t.paths for t in full.build.targets] == [("src/**", "tests/**"), ("docs/**",)]
    assert [(t.name, t.role) for t in config.api.tokens] == [
        ("poller", "ingest"),
        ("deploy-gate", "read"),
        ("console", "read"),
    ]
    assert config.console.api.token_env == "STOVEPIPE_CONSOLE_TOKEN"
    assert config.console.listen == "127.0.0.1:8080"
    assert config.console.login_tokens == () and config.console.admin_token_env is None


def test_the_minimal_example_queue_takes_every_default() -> None:
    minimal = load_config(ROOT / "stovepipe.example.yaml", env={}).queue("tools/main")
    assert (minimal.source.extension, minimal.source.ref, minimal.build.runner) == (
        "git",
        "main",
        "local",
    )
    assert minimal.max_concurrent == 1
    assert minimal.promotion_ref is None
    assert minimal.build.targets[0].timeout_seconds == 600


def test_the_example_sets_every_default_it_documents() -> None:
    example = load_config(ROOT / "stovepipe.example.yaml", env={})
    defaults = default_config(env={})
    assert example.storage == defaults.storage
    assert example.kafka == defaults.kafka
    for stage in retrying_stage_names():
        assert example.workers.retry_policy(stage) == defaults.workers.retry_policy(stage)
    assert set(example.workers.stage_policies()) == set(retrying_stage_names())
    assert (
        example.workers.buildsignal_poll_interval_seconds,
        example.workers.sweeper_stale_after_seconds,
    ) == (
        defaults.workers.buildsignal_poll_interval_seconds,
        defaults.workers.sweeper_stale_after_seconds,
    )
    assert example.api.listen == defaults.api.listen
    assert example.console.listen == defaults.console.listen
    assert example.console.page_size == defaults.console.page_size


def test_defaults_without_a_file() -> None:
    config = default_config(env={})
    assert config.storage.url == "sqlite+aiosqlite:///.stovepipe/stovepipe.db"
    assert config.kafka.bootstrap_servers == ""
    assert (config.kafka.partitions, config.kafka.fetch_max_wait_ms) == (3, 20)
    assert config.api.listen == "127.0.0.1:50051"
    assert config.api.tokens == () and config.api.tls is None
    assert set(config.extensions.sourcecontrol) == {"git"}
    assert set(config.extensions.buildrunner) == {"local"}
    assert config.workers.retry_policy("build").max_attempts == 8
    assert config.queues == ()


def test_a_dump_loads_back_unchanged(tmp_path: Path) -> None:
    config = load_config(ROOT / "stovepipe.example.yaml", env={})
    for exclude_none in (True, False):
        text = yaml.safe_dump(config.model_dump(mode="json", exclude_none=exclude_none))
        assert load_config(_write(tmp_path, text), env={}) == config


def test_models_are_frozen() -> None:
    config = config_from_mapping({"queues": [queue()]})
    with pytest.raises(ValueError, match="frozen"):
        config.queue("mono/main").max_concurrent = 5


def test_relative_paths_are_read_from_the_files_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "stovepipe.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "api": {
                    "tokens": [{"name": "p", "role": "read", "token_file": "secrets/token"}],
                    "tls": {
                        "cert_file": "../tls/cert.pem",
                        "key_file": "/abs/key.pem",
                        "client_ca_file": "clients/ca.pem",
                    },
                },
                "queues": [
                    queue("a/main", source={"repository": "../repo"}),
                    queue("b/main", source={"repository": "git@github.com:org/b.git"}),
                    queue("c/main", source={"repository": "https://example.com/c.git"}),
                ],
            }
        )
    )
    config = load_config(path, env={})
    assert config.api.tokens[0].token_file == str(tmp_path / "conf" / "secrets" / "token")
    assert config.api.tls is not None
    assert config.api.tls.cert_file == str(tmp_path / "tls" / "cert.pem")
    assert config.api.tls.key_file == "/abs/key.pem"
    assert config.api.tls.client_ca_file == str(tmp_path / "conf" / "clients" / "ca.pem")
    assert config.queue("a/main").source.repository == str(tmp_path / "repo")
    assert config.queue("b/main").source.repository == "git@github.com:org/b.git"
    assert config.queue("b/main").source.is_remote
    assert config.queue("c/main").source.repository == "https://example.com/c.git"


def test_yaml_anchors_can_share_targets(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
queues:
  - name: a/main
    source: {repository: /r}
    build:
      targets: &std
        - {name: unit, command: make test}
  - name: b/main
    source: {repository: /r, ref: b}
    build: {targets: *std}
""",
    )
    config = load_config(path, env={})
    assert config.queue("b/main").build.targets == config.queue("a/main").build.targets


def test_yaml_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "queues:\n  - name: a\n   bad: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).startswith(f"{path}: line 3, column 4: YAML syntax error: ")


def test_an_unquoted_glob_gets_a_hint(tmp_path: Path) -> None:
    path = _write(tmp_path, "queues:\n  - build:\n      targets:\n        - paths: **/*.py\n")
    with pytest.raises(ConfigError, match=r"line 4, column \d+: YAML syntax error") as caught:
        load_config(path, env={})
    assert "quote values that start with '*'" in str(caught.value)


def test_a_key_written_twice_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "kafka:\n  partitions: 3\n  partitions: 6\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "line 3, column 3: YAML syntax error: duplicate key 'partitions' (first written at " in (
        str(caught.value)
    )


def test_a_missing_file_points_at_the_example(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == (
        f"{path}: file not found; copy stovepipe.example.yaml (in the Stovepipe repository) "
        "to start one"
    )


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_an_empty_file_says_what_is_expected(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == (
        f"{path}: the file is empty; expected a mapping with at least a 'queues' list "
        "(see stovepipe.example.yaml)"
    )


def test_a_top_level_list_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "- name: a/main\n")
    with pytest.raises(ConfigError, match=r"expected a mapping at the top level .* found a list"):
        load_config(path, env={})


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory; expected a YAML file"):
        load_config(tmp_path, env={})


def test_validation_problems_carry_their_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """queues:
  - name: a/main
    source: {repository: /r}
    max_concurent: 2
    build:
      targets:
        - name: unit
          command: make test
          timeout_seconds: 0
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).splitlines() == [
        f"{path}: queues[0] (a/main).max_concurent: unknown key; did you mean 'max_concurrent'? "
        "(line 4)",
        f"{path}: queues[0] (a/main).build.targets[0] (unit).timeout_seconds: "
        "must be greater than 0 (line 9)",
    ]


def test_poll_and_depends_on_problems_carry_their_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """queues:
  - name: a/main
    source: {repository: /r}
    build: {targets: [{name: u, command: x}]}
    poll: {schedule: "*/2 * * *"}
  - name: c/main
    source: {repository: /c}
    build: {targets: [{name: u, command: x}]}
    poll: {every: 30, schedule: "*/2 * * * *"}
  - name: d/main
    source: {repository: /d}
    build: {targets: [{name: u, command: x}]}
    depends_on: [b/main, d/main]
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    lines = str(caught.value).splitlines()
    assert any(
        "queues[0] (a/main).poll.schedule" in line
        and "not a five-field cron expression" in line
        and line.endswith("(line 5)")
        for line in lines
    ), lines
    assert any(
        "queues[1] (c/main).poll" in line and "exactly one of every" in line for line in lines
    ), lines
    assert any(
        "queues[2] (d/main).depends_on[0]" in line
        and "'b/main' is not a configured queue" in line
        and line.endswith("(line 13)")
        for line in lines
    ), lines
    assert any(
        "queues[2] (d/main).depends_on[1]" in line and "cannot depend on itself" in line
        for line in lines
    ), lines


def test_a_missing_key_points_at_its_parent(tmp_path: Path) -> None:
    path = _write(tmp_path, "queues:\n  - name: a/main\n    build: {targets: [{name: u}]}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value).splitlines() == [
        f"{path}: queues[0] (a/main).source: is required (line 2)",
        f"{path}: queues[0] (a/main).build.targets[0] (u).command: is required (line 3)",
    ]


def test_config_from_mapping_names_its_source() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"kafka": {"partitions": 0}}, source="demo")
    assert str(caught.value) == "demo: kafka.partitions: must be at least 1"
    assert isinstance(config_from_mapping(None), StovepipeConfig)
