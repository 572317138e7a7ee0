"""``kafka:`` security settings: what a complete one looks like, and every incomplete one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from harness.config_factory import problems_of
from stovepipe.config import SecretUnavailable, config_from_mapping, resolve_secret
from stovepipe.config.secrets import SecretRef
from stovepipe.config.sections import KafkaConfig, KafkaSaslMechanism, KafkaSecurityProtocol
from stovepipe.messaging.settings import SaslMechanism, SecurityProtocol

ROOT = Path(__file__).resolve().parents[2]
SECURITY_KEYS = {
    "security_protocol",
    "ssl_ca_file",
    "ssl_cert_file",
    "ssl_key_file",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password_env",
    "sasl_password_file",
}
SASL_SSL = {
    "bootstrap_servers": "kafka-1:9093",
    "security_protocol": "SASL_SSL",
    "ssl_ca_file": "/etc/stovepipe/kafka/ca.pem",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "stovepipe",
    "sasl_password_env": "STOVEPIPE_KAFKA_PASSWORD",
}


def _ref(kafka: KafkaConfig) -> SecretRef:
    """The SASL password's reference (the test configures one)."""
    ref = kafka.secret_ref()
    assert ref is not None
    return ref


def example_security_block() -> dict[str, Any]:
    """The commented SASL_SSL example under ``kafka:`` in stovepipe.example.yaml, uncommented."""
    text = (ROOT / "stovepipe.example.yaml").read_text()
    found = re.findall(r"^  # (security_protocol|ssl_\w+|sasl_\w+): (\S+)", text, re.MULTILINE)
    return {key: yaml.safe_load(value) for key, value in found}


def kafka(**settings: Any) -> dict[str, Any]:
    return {"kafka": settings}


def test_the_config_and_the_messaging_layer_offer_the_same_choices() -> None:
    assert get_args(KafkaSecurityProtocol) == get_args(SecurityProtocol)
    assert get_args(KafkaSaslMechanism) == get_args(SaslMechanism)


def test_the_example_shows_every_security_key_and_its_block_loads() -> None:
    block = example_security_block()
    assert set(block) == SECURITY_KEYS - {"sasl_password_file"}  # the other password source
    example = yaml.safe_load((ROOT / "stovepipe.example.yaml").read_text())
    example["kafka"].update(block)
    env = {"KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9093"}
    config = config_from_mapping(example, "stovepipe.example.yaml", env=env)
    assert config.kafka.security_protocol == "SASL_SSL"
    assert config.kafka.ssl_cert_file == "/etc/stovepipe/kafka/client.pem"
    assert (
        resolve_secret(_ref(config.kafka), env={"STOVEPIPE_KAFKA_PASSWORD": "s3cr3t"}) == "s3cr3t"
    )


def test_the_default_is_plaintext_without_a_password() -> None:
    config = config_from_mapping({})
    assert config.kafka.security_protocol == "PLAINTEXT"
    assert config.kafka.secret_ref() is None


def test_the_password_is_read_from_the_variable_or_the_file_it_names(tmp_path: Path) -> None:
    config = config_from_mapping(kafka(**SASL_SSL))
    assert resolve_secret(_ref(config.kafka), env={"STOVEPIPE_KAFKA_PASSWORD": "pw-1"}) == "pw-1"
    secret = tmp_path / "kafka-password"
    secret.write_text("pw-2\n")
    by_file = {**SASL_SSL, "sasl_password_env": None, "sasl_password_file": str(secret)}
    assert resolve_secret(_ref(config_from_mapping(kafka(**by_file)).kafka), env={}) == "pw-2"
    with pytest.raises(SecretUnavailable) as caught:
        resolve_secret(_ref(config.kafka), env={})
    assert str(caught.value) == (
        "kafka.sasl_password: environment variable STOVEPIPE_KAFKA_PASSWORD is not set or is empty"
    )


def test_tls_may_trust_the_system_store_and_sasl_plaintext_needs_no_files() -> None:
    ssl_only = config_from_mapping(kafka(bootstrap_servers="k:9093", security_protocol="SSL"))
    assert ssl_only.kafka.ssl_ca_file is None
    sasl = {k: v for k, v in SASL_SSL.items() if k != "ssl_ca_file"}
    sasl["security_protocol"] = "SASL_PLAINTEXT"
    assert config_from_mapping(kafka(**sasl)).kafka.sasl_username == "stovepipe"


def test_home_relative_paths_are_expanded() -> None:
    config = config_from_mapping(kafka(**{**SASL_SSL, "ssl_ca_file": "~/kafka-ca.pem"}))
    assert config.kafka.ssl_ca_file == str(Path("~/kafka-ca.pem").expanduser())


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(
            {"security_protocol": "SSL"},
            [
                "kafka.security_protocol: SSL needs bootstrap_servers: the embedded broker "
                "that `stovepipe up` starts when bootstrap_servers is empty speaks PLAINTEXT only"
            ],
            id="embedded-broker-is-plaintext",
        ),
        pytest.param(
            {"bootstrap_servers": "k:9093", "security_protocol": "SASL_SSL"},
            [
                "kafka.sasl_mechanism: is required with SASL_SSL (one of PLAIN, SCRAM-SHA-256, "
                "SCRAM-SHA-512)",
                "kafka.sasl_username: is required with SASL_SSL",
                "kafka.sasl_password_env: SASL_SSL needs exactly one of sasl_password_env or "
                "sasl_password_file",
            ],
            id="sasl-incomplete",
        ),
        pytest.param(
            {**SASL_SSL, "sasl_password_file": "/run/secrets/kafka"},
            [
                "kafka.sasl_password_env: SASL_SSL needs exactly one of sasl_password_env or "
                "sasl_password_file"
            ],
            id="two-password-sources",
        ),
        pytest.param(
            {
                "bootstrap_servers": "k:9092",
                "ssl_ca_file": "/etc/ca.pem",
                "sasl_username": "stovepipe",
            },
            [
                "kafka.ssl_ca_file: is only used with security_protocol SSL or SASL_SSL "
                "(it is PLAINTEXT)",
                "kafka.sasl_username: is only used with security_protocol SASL_PLAINTEXT or "
                "SASL_SSL (it is PLAINTEXT)",
            ],
            id="settings-that-would-be-ignored",
        ),
        pytest.param(
            {
                "bootstrap_servers": "k:9093",
                "security_protocol": "SSL",
                "ssl_cert_file": "/etc/client.pem",
            },
            ["kafka.ssl_key_file: a client certificate needs both ssl_cert_file and ssl_key_file"],
            id="certificate-without-key",
        ),
        pytest.param(
            {**SASL_SSL, "ssl_ca_file": "certs/ca.pem"},
            ["kafka.ssl_ca_file: must be an absolute path (starting with / or ~/)"],
            id="relative-path",
        ),
        pytest.param(
            {**SASL_SSL, "sasl_mechanism": "GSSAPI"},
            ["kafka.sasl_mechanism: must be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"],
            id="unsupported-mechanism",
        ),
        pytest.param(
            {**SASL_SSL, "sasl_password_env": None, "sasl_password": "hunter2"},
            [
                "kafka.sasl_password: a literal password is not allowed in the file; name the "
                "environment variable that holds it with sasl_password_env, or a file with "
                "sasl_password_file"
            ],
            id="literal-password",
        ),
        pytest.param(
            {**SASL_SSL, "sasl_password_env": "hunter2 is my password"},
            [
                "kafka.sasl_password_env: must be the name of an environment variable "
                "(letters, digits and '_'), not the secret itself"
            ],
            id="password-pasted-as-variable-name",
        ),
    ],
)
def test_incomplete_security_is_reported_at_each_key(
    settings: dict[str, Any], expected: list[str]
) -> None:
    problems = problems_of(kafka(**settings))
    assert problems == [f"stovepipe.yaml: {line}" for line in expected]
    assert not any("hunter2" in line for line in problems)


def test_security_can_come_from_the_environment() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9093",
        "STOVEPIPE__KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "STOVEPIPE__KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
        "STOVEPIPE__KAFKA__SASL_USERNAME": "stovepipe",
        "STOVEPIPE__KAFKA__SASL_PASSWORD_ENV": "KAFKA_PASSWORD",
    }
    config = config_from_mapping({}, env=env)
    assert (config.kafka.security_protocol, config.kafka.sasl_mechanism) == (
        "SASL_PLAINTEXT",
        "SCRAM-SHA-256",
    )
    literal = {**env, "STOVEPIPE__KAFKA__SASL_PASSWORD": "hunter2"}
    assert problems_of({}, env=literal) == [
        "stovepipe.yaml: kafka.sasl_password: a literal password is not allowed in the file; "
        "name the environment variable that holds it with sasl_password_env, or a file with "
        "sasl_password_file (set by environment variable STOVEPIPE__KAFKA__SASL_PASSWORD)"
    ]


def test_a_dump_of_a_secured_kafka_section_loads_back_unchanged() -> None:
    config = config_from_mapping(kafka(**SASL_SSL))
    dumped = config.kafka.model_dump(mode="json", exclude_none=True)
    assert KafkaConfig.model_validate(dumped) == config.kafka
    assert "STOVEPIPE_KAFKA_PASSWORD" in repr(config.kafka)  # the variable's name, not a secret
