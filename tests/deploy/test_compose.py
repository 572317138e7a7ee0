"""deploy/compose: valid Compose, real commands, every stage, secrets by reference only.

The file is validated against the Compose specification's JSON schema as
check-jsonschema ships it (vendored from github.com/compose-spec/compose-spec,
``schema/compose-spec.json``). Commands are checked by the CLI's own parser
(``harness.stovepipe_argv``), so a renamed verb, stage or option fails here.
"""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.stovepipe_argv import Invocation, option_value, parse
from stovepipe.api.transport import check_listener
from stovepipe.config import StovepipeConfig, load_config
from stovepipe.runtime.registry import STAGE_NAMES

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose" / "compose.yaml"
SECRETISH = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|PRIVATE_KEY|API_KEY", re.I)
PINNED_TAG = re.compile(r":\d+\.\d+\.\d+(-[a-z0-9.]+)?(@sha256:[0-9a-f]{64})?$")


def _schema() -> dict[str, Any]:
    try:
        import jsonschema  # noqa: F401  (a check-jsonschema dependency)

        vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    except ModuleNotFoundError:
        pytest.fail("the Compose schema comes with check-jsonschema: pip install -e '.[dev]'")
    return dict(json.loads((vendor / "compose-spec.json").read_text()))


def _problems(document: dict[str, Any]) -> list[str]:
    import jsonschema

    validator_class = jsonschema.validators.validator_for(_schema())
    validator = validator_class(_schema())
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def _is_stovepipe(service: dict[str, Any]) -> bool:
    return "stovepipe" in str(service.get("image", "")).split("/")[-1]


@pytest.fixture(scope="module")
def invocations(services: dict[str, dict[str, Any]]) -> dict[str, Invocation]:
    return {name: parse(s["command"]) for name, s in services.items() if _is_stovepipe(s)}


@pytest.fixture(scope="module")
def config(compose: dict[str, Any]) -> StovepipeConfig:
    source = compose["configs"]["stovepipe"]["file"]
    return load_config(COMPOSE.parent / source, env={})


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert _problems(compose) == []


def test_the_schema_check_is_not_vacuous(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["restart_policy"] = "always"  # no such key
    broken["services"]["kafka"]["depends_on"] = {"postgres": {"condition": "whenever"}}
    assert len(_problems(broken)) >= 2


def test_every_stovepipe_command_is_a_real_verb(
    services: dict[str, dict[str, Any]], invocations: dict[str, Invocation]
) -> None:
    for name, service in services.items():
        if not _is_stovepipe(service):
            continue
        assert "entrypoint" not in service, f"{name}: the image's ENTRYPOINT is stovepipe"
        test = service.get("healthcheck", {}).get("test")
        if test is not None and invocations[name].verb == "console":
            # the console serves HTTP, not gRPC health: its probe is /healthz
            assert test[:2] == ["CMD", "python"], f"{name}: {test}"
        elif test is not None:
            assert test[:2] == ["CMD", "stovepipe"], f"{name}: {test}"
            assert parse(test[2:]).verb == "health"
    verbs = {invocation.verb for invocation in invocations.values()}
    assert verbs == {
        "db upgrade",
        "api",
        "worker",
        "poller",
        "webhooks",
        "console",
        "ext git",
        "ext local-runner",
        "ext hooks",
        "ext project-mapper",
    }


def test_each_ingress_process_is_wired_to_what_it_serves(
    services: dict[str, dict[str, Any]],
    invocations: dict[str, Invocation],
    config: StovepipeConfig,
) -> None:
    """The poller and webhook receiver report health; the receiver publishes
    webhooks.listen and has its secrets; the console publishes console.listen,
    probes it over its own scheme and holds its API token and login tokens."""
    by_verb = {i.verb: name for name, i in invocations.items()}
    for verb in ("poller", "webhooks"):
        name = by_verb[verb]
        port = invocations[name].params["health_port"]
        assert port is not None, f"{name}: no --health-port"
        probe = parse(services[name]["healthcheck"]["test"][2:])
        assert probe.params["address"] == f"127.0.0.1:{port}", name
    assert config.webhooks is not None
    receiver = services[by_verb["webhooks"]]
    listen_port = config.webhooks.listen.rsplit(":", 1)[1]
    assert any(str(p).endswith(f":{listen_port}") for p in receiver["ports"])
    mounted = {f"/run/secrets/{s}" for s in receiver["secrets"]}
    for host, secret in config.webhooks.hosts().items():
        assert secret.secret_file in mounted, f"webhooks.{host}: secret not mounted"
    console = services[by_verb["console"]]
    port = config.console.listen.rsplit(":", 1)[1]
    assert any(str(p).endswith(f":{port}") for p in console["ports"])
    scheme = "https" if (config.console.tls or config.api.tls) else "http"
    assert f"'{scheme}://127.0.0.1:{port}/healthz'" in console["healthcheck"]["test"][-1]
    mounted = {f"/run/secrets/{s}" for s in console["secrets"]}
    console_files = {
        config.console.api.token_file,
        config.console.api.ca_file,
        *(t.token_file for t in config.console.login_tokens),
    } - {None}
    assert console_files <= mounted
    assert config.console.api.address == f"api:{config.api.listen.rsplit(':', 1)[1]}"
    read_tokens = {t.token_file for t in config.api.tokens if t.role == "read"}
    assert config.console.api.token_file in read_tokens, "the console reads with a read token"


def test_every_registered_stage_has_exactly_one_worker_service(
    invocations: dict[str, Invocation],
) -> None:
    stages = sorted(i.params["stage"] for i in invocations.values() if i.verb == "worker")
    assert stages == sorted(STAGE_NAMES)


def test_workers_report_health_on_their_health_port(
    services: dict[str, dict[str, Any]], invocations: dict[str, Invocation]
) -> None:
    for name, invocation in invocations.items():
        if invocation.verb != "worker":
            continue
        port = invocation.params["health_port"]
        assert port is not None, f"{name}: a worker without --health-port serves no health"
        probe = parse(services[name]["healthcheck"]["test"][2:])
        assert probe.params["address"] == f"127.0.0.1:{port}", name
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }


def test_servers_report_health_where_they_serve_it(
    services: dict[str, dict[str, Any]],
    invocations: dict[str, Invocation],
    config: StovepipeConfig,
) -> None:
    for name, invocation in invocations.items():
        if invocation.verb == "api":
            # health on the plaintext --health-port (the API itself may speak TLS)
            port = invocation.params["health_port"] or config.api.listen.rsplit(":", 1)[1]
            assert invocation.params["health_port"] or config.api.tls is None, name
        elif invocation.verb.startswith("ext "):
            listen = option_value(invocation, "--listen")
            assert listen is not None, f"{name}: the default listen address is loopback only"
            port = listen.rsplit(":", 1)[1]
        else:
            continue
        probe = parse(services[name]["healthcheck"]["test"][2:])
        assert probe.params["address"] == f"127.0.0.1:{port}", name


def test_the_api_will_serve_what_it_is_given(
    services: dict[str, dict[str, Any]],
    invocations: dict[str, Invocation],
    config: StovepipeConfig,
) -> None:
    """The API's own start-up rule (no tokens in plaintext on a network) passes, and
    its TLS files are secrets mounted into its container."""
    check_listener(config.api, has_tokens=bool(config.api.tokens))
    assert not config.api.allow_insecure
    assert config.api.tls is not None
    (api,) = [n for n, i in invocations.items() if i.verb == "api"]
    mounted = {f"/run/secrets/{s}" for s in services[api].get("secrets", [])}
    assert {config.api.tls.cert_file, config.api.tls.key_file} <= mounted


def test_every_service_restarts_waits_on_conditions_and_is_checked(
    services: dict[str, dict[str, Any]], invocations: dict[str, Invocation]
) -> None:
    for name, service in services.items():
        if invocations.get(name) and invocations[name].verb == "db upgrade":
            assert service["restart"] == "no"  # one-shot
            assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}
            continue
        assert service.get("restart") == "unless-stopped", name
        assert service.get("healthcheck", {}).get("test"), f"{name}: no health check"
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert how["condition"] in ("service_healthy", "service_completed_successfully")


def test_kafka_runs_in_kraft_mode_and_images_are_pinned(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka, postgres = services["kafka"], services["postgres"]
    assert kafka["image"].startswith("apache/kafka:")
    assert PINNED_TAG.search(kafka["image"]), kafka["image"]
    assert "broker" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert "KAFKA_ZOOKEEPER_CONNECT" not in kafka["environment"]
    assert re.fullmatch(r"postgres:15\.\d+(-\w+)?", postgres["image"]), postgres["image"]


def test_the_mounted_configuration_loads_and_names_reachable_services(
    services: dict[str, dict[str, Any]],
    invocations: dict[str, Invocation],
    config: StovepipeConfig,
) -> None:
    assert config.unaddressed_extensions() == ()
    listen_port = {
        name: option_value(i, "--listen").rsplit(":", 1)[1]  # type: ignore[union-attr]
        for name, i in invocations.items()
        if i.verb.startswith("ext ")
    }
    endpoints = [
        *config.extensions.sourcecontrol.values(),
        *config.extensions.buildrunner.values(),
        *config.extensions.hooks.values(),
        *config.extensions.projectmapper.values(),
    ]
    for endpoint in endpoints:
        assert endpoint.address is not None
        host, port = endpoint.address.rsplit(":", 1)
        assert listen_port.get(host) == port, f"{endpoint.address} is not a service's --listen"
    assert config.kafka.bootstrap_servers.split(":")[0] in services
    host = config.storage.url.split("@", 1)[1].split(":")[0]
    assert host in services
    assert config.api.tokens, "the API serves a network: it must authenticate its callers"
    for name, invocation in invocations.items():
        if invocation.verb != "ext local-runner":
            continue
        assert option_value(invocation, "--source-control") == (
            config.extensions.sourcecontrol["git"].address
        ), name
        for service in (name, "ext-git"):
            flags = set(invocations[service].passthrough)
            assert flags & {"--token-file", "--token-env"}, f"{service} must require a token"
    for name, invocation in invocations.items():
        if invocation.verb in (
            "api", "worker", "db upgrade", "poller", "webhooks", "console", "ext git", "ext hooks"
        ):  # fmt: skip
            given = invocation.params.get("config") or option_value(invocation, "--config")
            mounted = [c["target"] for c in services[name].get("configs", [])]
            assert given is not None, f"{name}: --config (ext git: the allow-list)"
            assert str(given) in mounted, f"{name}: --config {given} is not the mounted file"


def test_secrets_are_only_referenced(compose: dict[str, Any]) -> None:
    for name, secret in compose["secrets"].items():
        assert set(secret) <= {"environment", "file", "external"}, name
        if "file" in secret:
            assert not (COMPOSE.parent / secret["file"]).exists(), f"{name} is committed"
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: write environment as a mapping"
        for key, value in environment.items():
            if SECRETISH.search(key) and not key.endswith("_FILE"):
                assert re.fullmatch(r"\$\{\w+(:?\?[^}]*)?\}", str(value)), (
                    f"{name}.{key} must be interpolated from the environment, not written"
                )


def test_token_files_come_from_the_services_secrets(
    services: dict[str, dict[str, Any]],
    invocations: dict[str, Invocation],
    config: StovepipeConfig,
) -> None:
    core_files = {
        str(e.token_file)
        for e in (
            *config.extensions.sourcecontrol.values(),
            *config.extensions.buildrunner.values(),
            *config.extensions.hooks.values(),
            *config.extensions.projectmapper.values(),
        )
        if e.token_file
    }
    api_files = {str(t.token_file) for t in config.api.tokens if t.token_file}
    for name, invocation in invocations.items():
        mounted = {f"/run/secrets/{s}" for s in services[name].get("secrets", [])}
        # every process that opens the extension registry reads every addressed token
        if invocation.verb in ("api", "worker", "poller", "webhooks"):
            assert core_files <= mounted, name
        if invocation.verb == "api":
            assert api_files <= mounted
        for option in ("--token-file", "--source-control-token-file"):
            value = option_value(invocation, option)
            if value is not None:
                assert value in mounted, f"{name}: {value} is not one of its secrets"
