"""Value types shared by the configuration sections, each with the rule it enforces.

The checks are deliberately shallow: they catch what is certainly wrong when the
file is loaded (a port out of range, a variable name that is really a pasted
secret) and leave reachability to ``stovepipe preflight``. Messages never echo
a value that could be a secret.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)"
_HOST_PORT = re.compile(rf"^{_HOST}:(?P<port>\d{{1,5}})$")
_KAFKA_HOST = re.compile(rf"^{_HOST}(?::(?P<port>\d{{1,5}}))?$")
_GRPC_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$")
_KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]+$")
_REMOTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*://|[\w.-]+@[\w.-]+:)")


def _port_ok(port: str | None) -> bool:
    return port is None or int(port) <= 65535


def check_address(value: str) -> str:
    """A gRPC address: ``host:port`` (``[::1]:50051`` for IPv6) or a ``unix:`` style target."""
    if value.startswith(_GRPC_SCHEMES):
        return value
    match = _HOST_PORT.match(value)
    if match is None or not _port_ok(match["port"]):
        raise ValueError(f"{value!r} is not an address; expected host:port such as 127.0.0.1:50051")
    return value


def check_bootstrap_servers(value: str) -> str:
    """Kafka bootstrap servers: comma-separated ``host[:port]`` entries; empty means embedded."""
    cleaned = [entry.strip() for entry in value.split(",")] if value.strip() else []
    for entry in cleaned:
        if "://" in entry:
            raise ValueError(f"{entry!r}: drop the scheme; expected host:port such as kafka:9092")
        match = _KAFKA_HOST.match(entry)
        if match is None or not _port_ok(match["port"]):
            raise ValueError(f"{entry!r} is not host:port (for example kafka-1:9092)")
    return ",".join(cleaned)


def check_env_name(value: str) -> str:
    """An environment variable name. The value is never echoed: it may be a pasted secret."""
    if not _ENV_NAME.match(value):
        raise ValueError(
            "must be the name of an environment variable (letters, digits and '_'), "
            "not the secret itself"
        )
    return value


def check_not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def check_extension_name(value: str) -> str:
    """Names of extension endpoints: lower-case letters, digits, '-' and '_'."""
    if not _NAME.match(value):
        raise ValueError(
            f"extension name {value!r} must be lower-case letters, digits, '-' or '_' "
            "and start and end with a letter or digit"
        )
    return value


def check_ref(value: str) -> str:
    """A branch or ref name; only what no SourceControl extension could accept is refused."""
    if not value.strip():
        raise ValueError("must not be empty")
    if any(c.isspace() for c in value) or value.startswith("-") or ".." in value:
        raise ValueError(f"{value!r} is not a valid ref name (no spaces, no '..', no leading '-')")
    return value


def check_kafka_topic_part(value: str) -> str:
    if value and not _KAFKA_TOPIC.match(value):
        raise ValueError(
            f"{value!r} may only contain letters, digits, '.', '_' and '-' (Kafka topic rules)"
        )
    return value


def is_remote(location: str) -> bool:
    """Whether a repository location is a URL (``https://``, ``ssh://``, ``git@host:``)."""
    return bool(_REMOTE.match(location))


Address = Annotated[str, AfterValidator(check_address)]
EnvName = Annotated[str, AfterValidator(check_env_name)]
NonBlank = Annotated[str, AfterValidator(check_not_blank)]
RefName = Annotated[str, AfterValidator(check_ref)]
ExtensionName = Annotated[str, AfterValidator(check_extension_name)]
PositiveSeconds = Annotated[float, Field(gt=0)]
