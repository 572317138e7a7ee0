"""The Queue directory and the helpers other components read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.config_factory import queue
from stovepipe.config import StovepipeConfig, UnknownQueue, config_from_mapping
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


def test_unaddressed_extensions_lists_what_the_queues_use_without_an_address() -> None:
    config = config_from_mapping(
        {
            "extensions": {
                "sourcecontrol": {"git": {"address": "git:50061"}, "spare": {}},
                "buildrunner": {"local": {}},
            },
            "queues": [queue()],
        }
    )
    assert config.unaddressed_extensions() == ("extensions.buildrunner.local",)


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
