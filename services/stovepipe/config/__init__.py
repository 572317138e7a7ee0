"""Configuration: one YAML file, validated on load, with environment overrides.

Entry points: ``load_config`` (a file), ``default_config`` (no file) and
``config_from_mapping`` (data already in memory). Every problem is reported at
once as ``<file>: <field path>: <problem>``. The file never holds a secret:
``resolve_secret`` reads the variable or file a setting names. Keys for features
that do not run yet are refused, not ignored.
"""

from stovepipe.config.errors import ConfigError, ConfigProblem, SecretUnavailable, UnknownQueue
from stovepipe.config.loader import config_from_mapping, default_config, load_config
from stovepipe.config.models import StovepipeConfig
from stovepipe.config.queues import (
    BuildConfig,
    ProjectConfig,
    QueueConfig,
    SourceConfig,
    TargetConfig,
)
from stovepipe.config.secrets import SecretRef, resolve_secret
from stovepipe.config.sections import (
    ApiConfig,
    Endpoint,
    ExtensionsConfig,
    KafkaConfig,
    StageConfig,
    StorageConfig,
    TlsConfig,
    TokenConfig,
    WorkersConfig,
)
from stovepipe.redaction import redact_url

__all__ = [
    "ApiConfig",
    "BuildConfig",
    "ConfigError",
    "ConfigProblem",
    "Endpoint",
    "ExtensionsConfig",
    "KafkaConfig",
    "ProjectConfig",
    "QueueConfig",
    "SecretRef",
    "SecretUnavailable",
    "SourceConfig",
    "StageConfig",
    "StorageConfig",
    "StovepipeConfig",
    "TargetConfig",
    "TlsConfig",
    "TokenConfig",
    "UnknownQueue",
    "WorkersConfig",
    "config_from_mapping",
    "default_config",
    "load_config",
    "redact_url",
    "resolve_secret",
]
