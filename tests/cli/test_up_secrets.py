"""``stovepipe up`` never shows the database password and keeps its state files private."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import yaml
from rich.console import Console

from stovepipe.config import config_from_mapping
from stovepipe.runtime.embedded import (
    RunningStack,
    child_environment,
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
