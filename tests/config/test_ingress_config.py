"""``poll``, ``depends_on`` and ``webhooks``: what is accepted, what is refused, what it means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stovepipe.config import ConfigError, config_from_mapping
from stovepipe.config.queues import PollConfig


def _queue(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"repository": f"/srv/{name}"},
        "build": {"targets": [{"name": "t", "command": "true"}]},
        **extra,
    }


def _problems(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(data)
    return str(caught.value)


def test_every_ticks_are_shared_by_every_replica_and_due_on_their_boundary() -> None:
    poll = PollConfig(every=2.5)
    now = datetime(2026, 11, 30, 12, 0, 1, tzinfo=UTC)
    due = poll.next_due(now)
    assert due > now and (due - now) <= timedelta(seconds=2.5)
    assert poll.tick_at(due) == poll.tick_at(now) + 1
    assert poll.next_due(due) - due == timedelta(seconds=2.5)


def test_a_cron_schedule_is_read_in_its_time_zone() -> None:
    poll = PollConfig(schedule="0 3 * * *", timezone="Europe/Paris")
    winter = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert poll.next_due(winter) == datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 03:00 CET
    summer = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    assert poll.next_due(summer) == datetime(2026, 7, 1, 1, 0, tzinfo=UTC)  # 03:00 CEST
    due = poll.next_due(winter)
    assert poll.tick_at(due) == int(due.timestamp())
    assert poll.tick_at(due + timedelta(hours=5)) == poll.tick_at(due)


@pytest.mark.parametrize(
    ("poll", "message"),
    [
        ({}, "exactly one of every (seconds) or schedule"),
        ({"every": 5, "schedule": "* * * * *"}, "exactly one of every"),
        ({"every": 0.1}, "must be at least 0.5"),
        ({"schedule": "*/5 * * *"}, "not a five-field cron expression"),
        ({"schedule": "61 * * * *"}, "not a valid cron expression"),
        ({"schedule": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every": 5, "timezone": "UTC"}, "timezone only applies to schedule"),
    ],
)
def test_bad_poll_settings_are_refused(poll: dict[str, Any], message: str) -> None:
    assert message in _problems({"queues": [_queue("a/main", poll=poll)]})


def test_paused_queues_keep_their_schedule() -> None:
    config = config_from_mapping(
        {"queues": [_queue("a/main", poll={"every": 30, "enabled": False}), _queue("b/main")]}
    )
    assert [q.name for q in config.polled_queues] == ["a/main"]
    assert config.queue("a/main").poll == PollConfig(every=30, enabled=False)


def test_dependency_cycles_and_unknown_queues_are_refused() -> None:
    text = _problems(
        {
            "queues": [
                _queue("a/main", depends_on=["b/main"]),
                _queue("b/main", depends_on=["c/main"]),
                _queue("c/main", depends_on=["a/main"]),
                _queue("d/main", depends_on=["x/main", "d/main"]),
                _queue("e/main", depends_on=["a/main", "a/main"]),
            ]
        }
    )
    assert "queues[0] (a/main).depends_on: forms a cycle: a/main -> b/main -> c/main -> a/main" in (
        text
    )
    assert "'x/main' is not a configured queue" in text
    assert "a queue cannot depend on itself" in text
    assert "lists 'a/main' more than once" in text


def test_dependents_are_found_in_file_order() -> None:
    config = config_from_mapping(
        {
            "queues": [
                _queue("tools/main"),
                _queue("mono/main", depends_on=["tools/main"]),
                _queue("web/main", depends_on=["tools/main", "mono/main"]),
            ]
        }
    )
    assert config.dependents_of("tools/main") == ("mono/main", "web/main")
    assert config.dependents_of("web/main") == ()


def test_webhook_secrets_are_named_never_written() -> None:
    assert "a literal secret is not allowed" in _problems(
        {"webhooks": {"github": {"secret": "hunter2"}}}
    )
    assert "hunter2" not in _problems({"webhooks": {"github": {"secret": "hunter2"}}})
    assert "exactly one of secret_env or secret_file" in _problems(
        {"webhooks": {"gitlab": {"secret_env": "A", "secret_file": "/b"}}}
    )
    assert "at least one of github, gitlab or gitea" in _problems({"webhooks": {}})
    config = config_from_mapping(
        {"webhooks": {"gitea": {"secret_file": "/run/secrets/gitea"}, "max_body_bytes": 4096}}
    )
    assert config.webhooks is not None
    assert list(config.webhooks.hosts()) == ["gitea"]
