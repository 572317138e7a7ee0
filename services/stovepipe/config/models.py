"""The whole of ``stovepipe.yaml``: ``StovepipeConfig`` and the lookups the service needs.

Section models live in ``sections`` (service-wide) and ``queues`` (per Queue);
this module adds the rules across sections and the Queue directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import ModelWrapValidatorHandler, ValidationError, model_validator

from stovepipe.config.base import ConfigModel, raise_problems
from stovepipe.config.crosscheck import as_plain_data, cross_check
from stovepipe.config.errors import UnknownQueue
from stovepipe.config.queues import QueueConfig
from stovepipe.config.secrets import resolve_role_tokens
from stovepipe.config.sections import (
    ApiConfig,
    ExtensionsConfig,
    KafkaConfig,
    StorageConfig,
    WorkersConfig,
)


class StovepipeConfig(ConfigModel):
    """A validated configuration. Build it with ``load_config`` or ``config_from_mapping``."""

    storage: StorageConfig = StorageConfig()
    kafka: KafkaConfig = KafkaConfig()
    api: ApiConfig = ApiConfig()
    extensions: ExtensionsConfig = ExtensionsConfig()
    workers: WorkersConfig = WorkersConfig()
    queues: tuple[QueueConfig, ...] = ()

    @model_validator(mode="wrap")
    @classmethod
    def _cross_check(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        problems = cross_check(as_plain_data(data))
        try:
            config = handler(data)
        except ValidationError as exc:
            if not problems:
                raise
            raise_problems(cls.__name__, exc, problems)
        if problems:
            raise_problems(cls.__name__, None, problems)
        return config

    @property
    def queue_names(self) -> tuple[str, ...]:
        """The configured Queue names, in file order."""
        return tuple(q.name for q in self.queues)

    def queue(self, name: str) -> QueueConfig:
        """The Queue called ``name``; ``UnknownQueue`` (listing the known names) otherwise.

        A scan, not an index: Queue counts are small, and a frozen model with a cache
        would compare unequal to its own copy."""
        for queue in self.queues:
            if queue.name == name:
                return queue
        raise UnknownQueue(name, self.queue_names)

    def api_tokens(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Secret token → role for the API, read now from the environment or files.

        Raises ``SecretUnavailable`` naming every variable or file that could not be read.
        """
        return resolve_role_tokens(self.api.tokens, env)

    def unaddressed_extensions(self) -> tuple[str, ...]:
        """Extensions the Queues use that have no address (``stovepipe up`` starts those;
        anywhere else they are a deployment error worth reporting before starting)."""
        used = {
            "sourcecontrol": {queue.source.extension for queue in self.queues},
            "buildrunner": {queue.build.runner for queue in self.queues},
        }
        missing: list[str] = []
        for kind, names in used.items():
            endpoints = getattr(self.extensions, kind)
            for name in sorted(names):
                endpoint = endpoints.get(name)
                if endpoint is None or endpoint.address is None:
                    missing.append(f"extensions.{kind}.{name}")
        return tuple(missing)
