"""The Queue directory and the helpers other components read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from harness.config_factory import queue
from stovepipe.config import (
    PollConfig,
    StovepipeConfig,
    UnknownQueue,
    config_from_mapping,
)
from stovepipe.domain.errors import InvalidInput


@pytest.fixture
def config() -> StovepipeConfig:
    return config_from_mapping({"queues": [queue("b/main"), queue("a/main", promotion_ref="v")]})


def test_queue_returns_the_configured_queue(config: StovepipeConfig) -> None:
    assert config.queue("a/main").promotion_ref == "v"
    assert config.queue_names == ("b/main", "a/main")


def test_an_unknown_queue_lists_the_known_ones(config: StovepipeConfig) -> None:
    with pytest.raises(UnknownQueue) as caught:
        config.queue("x/main")
    assert str(caught.value) == "unknown queue 'x/main' (known: b/main, a/main)"
    assert isinstance(caught.value, InvalidInput)
    assert (caught.value.name, caught.value.known) == ("x/main", ("b/main", "a/main"))


def test_an_unknown_queue_without_queues_says_so() -> None:
    with pytest.raises(UnknownQueue, match=r"\(known: none configured\)"):
        config_from_mapping({}).queue("a/main")


def test_lookup_follows_a_copy_with_other_queues(config: StovepipeConfig) -> None:
    config.queue("a/main")
    copied = config.model_copy(update={"queues": (config.queue("b/main"),)})
    with pytest.raises(UnknownQueue):
        copied.queue("a/main")


def test_every_polls_at_a_fixed_interval() -> None:
    poll = PollConfig(every=90)
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert poll.next_due(start) == start + timedelta(seconds=90)


def test_a_cron_schedule_is_read_in_its_time_zone() -> None:
    poll = PollConfig(schedule="0 9 * * *", timezone="Europe/Paris")
    due = poll.next_due(datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
    assert due == datetime(2026, 1, 2, 8, 0, tzinfo=UTC)


def test_a_disabled_schedule_is_never_due() -> None:
    poll = PollConfig(schedule="*/5 * * * *", enabled=False)
    assert poll.next_due(datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert PollConfig(enabled=False).next_due(datetime(2026, 1, 1, tzinfo=UTC)) is None


def test_polled_reflects_the_poll_section() -> None:
    data = {
        "queues": [
            queue("a/main", poll={"every": 30}),
            queue("b/main", poll={"every": 30, "enabled": False}),
            queue("c/main"),
        ]
    }
    config = config_from_mapping(data)
    assert [q.polled for q in config.queues] == [True, False, False]


def test_unaddressed_extensions_lists_what_the_queues_use_without_an_address() -> None:
    config = config_from_mapping(
        {
            "extensions": {
                "sourcecontrol": {"git": {"address": "git:50061"}, "spare": {}},
                "buildrunner": {"local": {}},
            },
            "queues": [queue(hooks=[{"name": "c", "kind": "log"}])],
        }
    )
    assert config.unaddressed_extensions() == (
        "extensions.buildrunner.local",
        "extensions.hooks.log",
    )


def test_an_empty_address_means_not_given() -> None:
    config = config_from_mapping({"extensions": {"sourcecontrol": {"git": {"address": ""}}}})
    assert config.extensions.sourcecontrol["git"].address is None


def test_bootstrap_servers_may_be_a_yaml_list() -> None:
    config = config_from_mapping({"kafka": {"bootstrap_servers": ["k1:9092", "[::1]:9093", "k3"]}})
    assert config.kafka.bootstrap_servers == "k1:9092,[::1]:9093,k3"


def test_models_built_in_code_get_the_cross_queue_checks_too() -> None:
    one = config_from_mapping({"queues": [queue()]}).queue("mono/main")
    with pytest.raises(ValidationError, match="is already used by queues\\[0\\]"):
        StovepipeConfig(queues=(one, one))


def test_lookups_leave_equality_alone(config: StovepipeConfig) -> None:
    twin = config_from_mapping(config.model_dump())
    config.queue("a/main")
    assert twin == config
