"""Configuration: one YAML file, validated on load, with environment overrides."""

from stovepipe.config.errors import ConfigError
from stovepipe.config.loader import config_from_mapping, default_config, load_config
from stovepipe.config.models import (
    ApiConfig,
    BuildConfig,
    Endpoint,
    ExtensionsConfig,
    HookConfig,
    KafkaConfig,
    PollConfig,
    ProjectConfig,
    QueueConfig,
    SourceConfig,
    StorageConfig,
    StovepipeConfig,
    TargetConfig,
    TokenConfig,
    UnknownQueue,
    WorkersConfig,
)
from stovepipe.config.secrets import resolve_secret

__all__ = [
    "ApiConfig",
    "BuildConfig",
    "ConfigError",
    "Endpoint",
    "ExtensionsConfig",
    "HookConfig",
    "KafkaConfig",
    "PollConfig",
    "ProjectConfig",
    "QueueConfig",
    "SourceConfig",
    "StorageConfig",
    "StovepipeConfig",
    "TargetConfig",
    "TokenConfig",
    "UnknownQueue",
    "WorkersConfig",
    "config_from_mapping",
    "default_config",
    "load_config",
    "resolve_secret",
]
