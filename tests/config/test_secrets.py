"""Secrets: read from the variable or file a setting names; never shown anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config_factory import problems_of, queue
from stovepipe.config import (
    ConfigError,
    SecretRef,
    SecretUnavailable,
    TokenConfig,
    config_from_mapping,
    redact_url,
    resolve_secret,
)

SECRET = "hunter2-0123456789"


def test_a_token_resolves_from_its_environment_variable() -> None:
    token = TokenConfig(name="poller", role="ingest", token_env="POLLER_TOKEN")
    assert resolve_secret(token, env={"POLLER_TOKEN": SECRET}) == SECRET


def test_a_token_resolves_from_its_file_without_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET + "\n")
    token = TokenConfig(name="gate", role="read", token_file=str(path))
    assert resolve_secret(token, env={}) == SECRET


def test_a_missing_variable_is_named_in_the_error() -> None:
    token = TokenConfig(name="poller", role="ingest", token_env="POLLER_TOKEN")
    with pytest.raises(SecretUnavailable) as caught:
        resolve_secret(token, env={"OTHER": SECRET})
    assert str(caught.value) == (
        "api token 'poller': environment variable POLLER_TOKEN is not set or is empty"
    )
    assert isinstance(caught.value, ConfigError)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "does not exist"), ("", "is empty"), ("  \n", "is empty")],
)
def test_an_unusable_file_is_named_in_the_error(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    token = TokenConfig(name="gate", role="read", token_file=str(path))
    with pytest.raises(SecretUnavailable) as caught:
        resolve_secret(token, env={})
    assert str(caught.value) == f"api token 'gate': secret file {path} {expected}"


def test_a_secret_reference_resolves_on_its_own(tmp_path: Path) -> None:
    assert resolve_secret(SecretRef("x", env="KEY"), env={"KEY": SECRET}) == SECRET
    path = tmp_path / "key"
    path.write_text(SECRET)
    assert resolve_secret(SecretRef("x", file=str(path)), env={}) == SECRET
    with pytest.raises(SecretUnavailable, match="names neither an environment variable"):
        resolve_secret(SecretRef("x"), env={})


def test_api_tokens_map_each_secret_to_its_role(tmp_path: Path) -> None:
    path = tmp_path / "gate-token"
    path.write_text("gate-secret")
    config = config_from_mapping(
        {
            "api": {
                "tokens": [
                    {"name": "poller", "role": "ingest", "token_env": "POLLER_TOKEN"},
                    {"name": "gate", "role": "read", "token_file": str(path)},
                ]
            }
        }
    )
    assert config.api_tokens(env={"POLLER_TOKEN": SECRET}) == {
        SECRET: "ingest",
        "gate-secret": "read",
    }


def test_api_tokens_report_every_unreadable_token_and_shared_secrets() -> None:
    config = config_from_mapping(
        {
            "api": {
                "tokens": [
                    {"name": "a", "role": "ingest", "token_env": "A"},
                    {"name": "b", "role": "admin", "token_env": "B"},
                    {"name": "c", "role": "read", "token_env": "C"},
                    {"name": "d", "role": "read", "token_env": "D"},
                ]
            }
        }
    )
    with pytest.raises(SecretUnavailable) as caught:
        config.api_tokens(env={"A": SECRET, "B": SECRET})
    message = str(caught.value)
    assert message.splitlines() == [
        "api.tokens: api token 'b': has the same secret as api token 'a'; give every caller "
        "its own token",
        "api.tokens: api token 'c': environment variable C is not set or is empty",
        "api.tokens: api token 'd': environment variable D is not set or is empty",
    ]
    assert SECRET not in message


def test_token_names_are_unique() -> None:
    tokens = [
        {"name": "p", "role": "ingest", "token_env": "A"},
        {"name": "p", "role": "read", "token_env": "B"},
    ]
    assert problems_of({"api": {"tokens": tokens}}) == [
        "stovepipe.yaml: api.tokens[1] (p).name: token name 'p' is already used by tokens[0]"
    ]


def test_a_literal_token_is_refused_without_echoing_it() -> None:
    tokens = [{"name": "p", "role": "read", "token": SECRET, "token_env": "T"}]
    problems = problems_of({"api": {"tokens": tokens}})
    assert problems == [
        "stovepipe.yaml: api.tokens[0] (p).token: a literal token is not allowed in the file; "
        "name the environment variable that holds it with token_env, or a file with token_file"
    ]


def test_a_database_password_never_shows_in_repr_str_or_redacted_dumps() -> None:
    url = f"postgresql+asyncpg://stovepipe:{SECRET}@db.internal:5432/stovepipe"
    config = config_from_mapping({"queues": [queue()]}, env={"STOVEPIPE_DATABASE_URL": url})
    assert config.storage.url == url
    masked = "postgresql+asyncpg://stovepipe:***@db.internal:5432/stovepipe"
    assert f"url='{masked}'" in repr(config)
    for shown in (repr(config), str(config), repr(config.storage), str(config.redacted())):
        assert SECRET not in shown
    assert config.redacted()["storage"]["url"] == masked
    assert config.storage.redacted() == {
        "url": masked,
        "pool_size": 20,
        "build_log_retention_days": 14.0,
    }


def test_model_dump_keeps_real_values_for_the_processes_that_connect() -> None:
    url = f"postgresql+asyncpg://app:{SECRET}@db/x"
    config = config_from_mapping({}, env={"STOVEPIPE_DATABASE_URL": url})
    assert config.model_dump()["storage"]["url"] == url
    assert config.model_dump(mode="json")["storage"]["url"] == url


def test_a_resolved_token_never_reaches_the_configuration(tmp_path: Path) -> None:
    config = config_from_mapping(
        {"api": {"tokens": [{"name": "p", "role": "ingest", "token_env": "POLLER_TOKEN"}]}}
    )
    assert config.api_tokens(env={"POLLER_TOKEN": SECRET}) == {SECRET: "ingest"}
    for shown in (repr(config), str(config), str(config.redacted()), str(config.model_dump())):
        assert SECRET not in shown


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:pw@db/x", "postgresql://app:***@db/x"),
        ("https://TOKEN@github.com/org/r.git", "https://***@github.com/org/r.git"),
        ("https://h/x?a=1&b=2", "https://h/x?a=***&b=***"),
        (
            "sqlite+aiosqlite:///.stovepipe/stovepipe.db",
            "sqlite+aiosqlite:///.stovepipe/stovepipe.db",
        ),
        ("/srv/git/repo.git", "/srv/git/repo.git"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
