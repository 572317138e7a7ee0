"""The ``console`` section: secrets only by reference, one admin source, TLS paths like the API's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stovepipe.config import ConfigError, config_from_mapping, load_config


@pytest.mark.parametrize(
    ("section", "said"),
    [
        ({"login_tokens": [{"name": "a", "token": "s3cret"}]}, "a literal token is not allowed"),
        ({"admin_token": "s3cret"}, "a literal token is not allowed"),
        ({"admin_token_env": "A", "admin_token_file": "/a"}, "at most one of admin_token_env"),
        ({"login_tokens": [{"name": "a"}]}, "exactly one of token_env or token_file"),
        (
            {"login_tokens": [{"name": "a", "token_env": "A"}, {"name": "a", "token_env": "B"}]},
            "already used",
        ),
        ({"page_size": 5000}, "page_size"),
    ],
)
def test_bad_console_sections_are_refused_saying_why(section: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        config_from_mapping({"console": section}, source="test")
    assert said in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_console_tls_files_are_read_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "stovepipe.yaml"
    path.write_text(
        yaml.safe_dump({"console": {"tls": {"cert_file": "c.pem", "key_file": "k.pem"}}})
    )
    tls = load_config(path, env={}).console.tls
    assert tls is not None
    assert (tls.cert_file, tls.key_file) == (str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
