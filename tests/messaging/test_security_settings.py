"""Kafka security settings → client keyword arguments, for aiokafka and FastStream alike.

No broker needed: the mapping from configuration to what every client is built
with, the checks on the files, and that no client in ``services/`` is built
without it. ``test_broker_security.py`` proves the same settings on the wire.
"""

from __future__ import annotations

import ast
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka.security import parse_security

from harness.tls import Pki
from stovepipe.config import SecretUnavailable, config_from_mapping
from stovepipe.messaging import KafkaSecurity, KafkaSecurityError, KafkaSettings, kafka_broker
from stovepipe.messaging.broker import faststream_security
from stovepipe.runtime.wiring import kafka_settings

SERVICES = Path(__file__).resolve().parents[2] / "services"
PASSWORD = "correct-horse-battery"
CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}


def _sasl(protocol: str, mechanism: str = "SCRAM-SHA-512", **files: Any) -> KafkaSecurity:
    return KafkaSecurity(
        protocol,  # type: ignore[arg-type]
        sasl_mechanism=mechanism,  # type: ignore[arg-type]
        sasl_username="stovepipe",
        sasl_password=PASSWORD,
        **files,
    )


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    settings = KafkaSettings("kafka-1:9092")
    assert settings.client_kwargs() == {
        "bootstrap_servers": "kafka-1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert faststream_security(settings.client_kwargs()) is None


def test_ssl_verifies_the_broker_against_the_given_ca(kafka_pki: Pki) -> None:
    settings = KafkaSettings(
        "kafka-1:9093", security=KafkaSecurity("SSL", ca_file=str(kafka_pki.ca_file))
    )
    kwargs = settings.client_kwargs()
    assert set(kwargs) == {"bootstrap_servers", "security_protocol", "ssl_context"}
    context = kwargs["ssl_context"]
    assert kwargs["security_protocol"] == "SSL"
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "stovepipe-test-ca"),),)
    ]


def test_ssl_without_a_ca_file_uses_the_system_trust_store() -> None:
    context = KafkaSecurity("SSL").client_kwargs()["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.cert_store_stats()["x509_ca"] == len(ssl.create_default_context().get_ca_certs())


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_sends_the_login_without_tls(mechanism: str) -> None:
    kwargs = KafkaSettings(
        "kafka-1:9092", security=_sasl("SASL_PLAINTEXT", mechanism)
    ).client_kwargs()
    assert kwargs == {
        "bootstrap_servers": "kafka-1:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "stovepipe",
        "sasl_plain_password": PASSWORD,
    }


def test_sasl_ssl_adds_tls_with_a_client_certificate(kafka_pki: Pki) -> None:
    security = _sasl(
        "SASL_SSL",
        ca_file=str(kafka_pki.ca_file),
        cert_file=str(kafka_pki.client_cert_file),
        key_file=str(kafka_pki.client_key_file),
    )
    kwargs = KafkaSettings("kafka-1:9093", security=security).client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"]) == (
        "SCRAM-SHA-512",
        "stovepipe",
    )


@pytest.mark.parametrize(
    "security",
    [
        KafkaSecurity(),
        KafkaSecurity("SSL"),
        _sasl("SASL_PLAINTEXT", "PLAIN"),
        _sasl("SASL_PLAINTEXT", "SCRAM-SHA-256"),
        _sasl("SASL_SSL", "SCRAM-SHA-512"),
    ],
    ids=lambda s: f"{s.protocol}-{s.sasl_mechanism}",
)
def test_the_faststream_broker_connects_with_the_same_arguments(security: KafkaSecurity) -> None:
    """FastStream turns its ``security=`` object back into aiokafka arguments: they must be ours."""
    settings = KafkaSettings("kafka-1:9093", security=security)
    broker = kafka_broker(settings)
    spec = broker.specification
    ours = settings.client_kwargs()
    del ours["bootstrap_servers"]
    theirs = parse_security(spec.security)
    if security.protocol == "PLAINTEXT":
        assert spec.security is None and spec.protocol == "kafka"
        return
    assert {k: v for k, v in theirs.items() if k != "ssl_context"} == {
        k: v for k, v in ours.items() if k != "ssl_context"
    }
    assert (theirs["ssl_context"] is None) == ("ssl_context" not in ours)
    assert spec.protocol == ("kafka-secure" if security.uses_ssl else "kafka")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"protocol": "TLS"}, "security protocol 'TLS' is not one of PLAINTEXT, SSL, "),
        ({"ca_file": "/ca.pem"}, "CA and client certificate files need SSL, not PLAINTEXT"),
        (
            {"protocol": "SSL", "cert_file": "/client.pem"},
            "a client certificate needs both cert_file and key_file",
        ),
        ({"sasl_username": "stovepipe"}, "SASL settings need SASL_PLAINTEXT or SASL_SSL"),
        ({"protocol": "SASL_SSL"}, "SASL_SSL needs a SASL mechanism, one of PLAIN, "),
        (
            {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
            "SASL_PLAINTEXT needs a SASL user name and password",
        ),
    ],
)
def test_inconsistent_security_is_refused(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        KafkaSecurity(**arguments)


def test_the_password_is_never_shown() -> None:
    settings = KafkaSettings("kafka-1:9093", security=_sasl("SASL_SSL"))
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert "sasl_username='stovepipe'" in repr(settings)


def test_a_missing_or_unusable_file_is_named(tmp_path: Path, kafka_pki: Pki) -> None:
    missing = str(tmp_path / "nowhere.pem")
    with pytest.raises(
        KafkaSecurityError, match=f"^Kafka TLS: the CA file {missing} does not exist$"
    ):
        KafkaSecurity("SSL", ca_file=missing).ssl_context()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(
        KafkaSecurityError, match=f"^Kafka TLS: cannot load CA file {re.escape(str(garbage))}: "
    ):
        KafkaSecurity("SSL", ca_file=str(garbage)).ssl_context()
    mismatched = KafkaSecurity(
        "SSL", cert_file=str(kafka_pki.client_cert_file), key_file=str(kafka_pki.server_key_file)
    )
    with pytest.raises(
        KafkaSecurityError, match=r"cannot load client certificate .* KEY_VALUES_MISMATCH"
    ):
        mismatched.ssl_context()


def _config(kafka: dict[str, Any]) -> Any:
    return config_from_mapping({"kafka": {"bootstrap_servers": "kafka-1:9093", **kafka}})


def test_the_composition_root_maps_every_setting_and_reads_the_password(
    kafka_pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text(PASSWORD + "\n")
    config = _config(
        {
            "security_protocol": "SASL_SSL",
            "ssl_ca_file": str(kafka_pki.ca_file),
            "ssl_cert_file": str(kafka_pki.client_cert_file),
            "ssl_key_file": str(kafka_pki.client_key_file),
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "stovepipe",
            "sasl_password_file": str(secret),
        }
    )
    settings = kafka_settings(config, "stovepipe-test")
    assert settings.security == KafkaSecurity(
        "SASL_SSL",
        ca_file=str(kafka_pki.ca_file),
        cert_file=str(kafka_pki.client_cert_file),
        key_file=str(kafka_pki.client_key_file),
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="stovepipe",
        sasl_password=PASSWORD,
    )
    by_env = _config(
        {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "stovepipe",
            "sasl_password_env": "STOVEPIPE_TEST_KAFKA_PASSWORD",
        }
    )
    monkeypatch.setenv("STOVEPIPE_TEST_KAFKA_PASSWORD", PASSWORD)
    assert kafka_settings(by_env, "stovepipe-test").security.sasl_password == PASSWORD


def test_a_process_with_unusable_security_fails_as_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STOVEPIPE_TEST_KAFKA_PASSWORD", raising=False)
    no_password = _config(
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "stovepipe",
            "sasl_password_env": "STOVEPIPE_TEST_KAFKA_PASSWORD",
        }
    )
    with pytest.raises(SecretUnavailable, match="STOVEPIPE_TEST_KAFKA_PASSWORD is not set"):
        kafka_settings(no_password, "stovepipe-test")
    no_ca = _config({"security_protocol": "SSL", "ssl_ca_file": str(tmp_path / "ca.pem")})
    with pytest.raises(
        KafkaSecurityError,
        match=f"^Kafka TLS: the CA file {re.escape(str(tmp_path))}/ca.pem does not exist$",
    ):
        kafka_settings(no_ca, "stovepipe-test")


def _client_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", None)) in CLIENTS
    ]


def _uses_client_kwargs(call: ast.Call) -> bool:
    return any(
        keyword.arg is None
        and isinstance(keyword.value, ast.Call)
        and getattr(keyword.value.func, "attr", None) == "client_kwargs"
        for keyword in call.keywords
    )


def test_every_kafka_client_in_services_is_built_from_client_kwargs() -> None:
    """A client built from ``bootstrap_servers`` alone would ignore the configured security."""
    found: list[str] = []
    bare: list[str] = []
    for path in sorted(SERVICES.rglob("*.py")):
        for call in _client_calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(SERVICES)}:{call.lineno}"
            found.append(where)
            if not _uses_client_kwargs(call):
                bare.append(where)
    # the scan still sees the clients it guards (a renamed class would hide them all)
    seen = {where.split(":")[0] for where in found}
    assert {
        "stovepipe/delays/forwarder.py",
        "stovepipe/messaging/admin.py",
        "stovepipe/runtime/dead_letters.py",
        "stovepipe/runtime/broker_watch.py",
    } <= seen, found
    assert bare == []
