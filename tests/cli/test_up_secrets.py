"""``stovepipe up`` never shows the database password and keeps its state files private."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import yaml
from rich.console import Console

from stovepipe.config import config_from_mapping
from stovepipe.runtime.embedded import (
    CONSOLE_TOKEN_ENV,
    CONSOLE_TOKEN_NAME,
    RunningStack,
    child_environment,
    extension_tokens,
    private_dir,
    write_effective_config,
)
from stovepipe.runtime.supervisor import Supervisor

PASSWORD = "pw-h4nter2-do-not-print"
URL = f"postgresql+asyncpg://stovepipe:{PASSWORD}@db.internal:5432/stovepipe"
QUEUE = {
    "name": "mono/main",
    "source": {"repository": "/srv/git/mono.git"},
    "build": {"targets": [{"name": "unit", "command": "make test"}]},
}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_table_masks_the_password_and_the_children_read_it_from_a_0600_file(
    tmp_path: Path,
) -> None:
    config = config_from_mapping(
        {"queues": [QUEUE]}, "stovepipe.yaml", env={"STOVEPIPE_DATABASE_URL": URL}
    )
    state = private_dir(tmp_path / "state")
    logs = private_dir(state / "logs")
    effective = state / "stovepipe.effective.yaml"
    effective.write_text("left over from an older run\n")
    effective.chmod(0o644)
    write_effective_config(
        effective,
        config,
        bootstrap="127.0.0.1:9092",
        database_url=config.storage.url,
        api_address="127.0.0.1:50051",
        git_address="127.0.0.1:50061",
        runner_address="127.0.0.1:50062",
    )
    stack = RunningStack(
        "127.0.0.1:50051", "127.0.0.1:9092", config.storage.url, effective, Supervisor()
    )
    out = io.StringIO()
    Console(file=out, width=200).print(stack.table())
    printed = out.getvalue()

    assert PASSWORD not in printed
    assert "postgresql+asyncpg://stovepipe:***@db.internal:5432/stovepipe" in printed
    assert _mode(effective) == 0o600
    assert _mode(state) == _mode(logs) == 0o700
    # the children still get the real URL, from the private file only
    assert yaml.safe_load(effective.read_text())["storage"]["url"] == URL
    env = child_environment(
        {"STOVEPIPE_DATABASE_URL": URL, "stovepipe__kafka__partitions": "6", "HOME": "/home/me"}
    )
    assert env == {"HOME": "/home/me"}


def _effective(tmp_path: Path, data: dict[str, object]) -> dict[str, object]:
    config = config_from_mapping({"queues": [QUEUE], **data}, "stovepipe.yaml", env={})
    path = tmp_path / "stovepipe.effective.yaml"
    write_effective_config(
        path,
        config,
        bootstrap="127.0.0.1:9092",
        database_url="sqlite+aiosqlite:///x.db",
        api_address="127.0.0.1:50051",
        git_address="127.0.0.1:50061",
        runner_address="127.0.0.1:50062",
    )
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_up_gives_its_console_a_read_token_by_reference_when_the_api_requires_tokens(
    tmp_path: Path,
) -> None:
    """With api.tokens and no console token, the console would be refused by its own API:
    up names a read token of its own, by environment variable (never a value)."""
    tokens = [{"name": "gate", "role": "read", "token_env": "GATE_TOKEN"}]
    data = _effective(tmp_path, {"api": {"tokens": tokens}})
    api = data["api"]
    console = data["console"]
    assert isinstance(api, dict) and isinstance(console, dict)
    assert api["tokens"][1] == {
        "name": CONSOLE_TOKEN_NAME,
        "role": "read",
        "token_env": CONSOLE_TOKEN_ENV,
    }
    assert console["api"]["token_env"] == CONSOLE_TOKEN_ENV
    assert CONSOLE_TOKEN_ENV in extension_tokens()
    # a console token the configuration names is left alone, and so are open APIs
    named = {"api": {"token_env": "MY_CONSOLE_TOKEN"}}
    data = _effective(tmp_path, {"api": {"tokens": tokens}, "console": named})
    assert [t["name"] for t in data["api"]["tokens"]] == ["gate"]  # type: ignore[index]
    assert _effective(tmp_path, {})["api"]["tokens"] == []  # type: ignore[index]
