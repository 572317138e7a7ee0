"""deploy/kubernetes: both overlays rendered with ``kubectl kustomize`` and checked.

Every rendered object is validated against the Kubernetes 1.30 OpenAPI schemas
(``kubernetes-validate``, strict: unknown fields are errors). Every container
command goes through the CLI's own parser (``harness.stovepipe_argv``), every stage of
the registry must have its Deployment, and the rest checks what the manifests
promise: probes on the ports the processes really serve, replicas within the
partitions, Secrets by reference only, a PodDisruptionBudget and resources for
every workload, and who may connect to whom.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.stovepipe_argv import Invocation, option_value, parse
from stovepipe.api.transport import check_listener
from stovepipe.config import StovepipeConfig, load_config
from stovepipe.runtime.registry import STAGE_NAMES, stage

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.30.0"
KUSTOMIZE_MAJOR = 5
CONFIG_PATH = "/etc/stovepipe/stovepipe.yaml"
SECRETISH = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|PRIVATE_KEY|API_KEY", re.I)
KUBECTL_HINT = (
    "kubectl (with kustomize v5, i.e. kubectl >= 1.27) renders deploy/kubernetes: install "
    "the `kubectl` package from the Kubernetes apt repository (pkgs.k8s.io), as .ci/run does; "
    "Debian's own kubernetes-client is 1.20, whose kustomize v2 cannot render these overlays"
)
WORKLOADS = ("Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob")


@dataclass(frozen=True)
class Rendered:
    overlay: str
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: {len(found)} {kind} named {name}"
        return found[0]


def _kubectl() -> str:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail(KUBECTL_HINT, pytrace=False)
    done = subprocess.run(
        [binary, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    version = json.loads(done.stdout or "{}").get("kustomizeVersion", "")
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < KUSTOMIZE_MAJOR:
        pytest.fail(f"kubectl's kustomize is {version or 'unknown'}; {KUBECTL_HINT}")
    return binary


def render(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [_kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {directory}: {done.stderr}"
    return [o for o in yaml.safe_load_all(done.stdout) if o]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return Rendered(request.param, render(KUBERNETES / "overlays" / request.param))


def _validation_problem(obj: Mapping[str, Any]) -> str | None:
    try:
        import kubernetes_validate
    except ModuleNotFoundError:
        pytest.fail("kubernetes-validate is missing: pip install -e '.[dev]'")
    try:
        kubernetes_validate.validate(dict(obj), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}"
    except kubernetes_validate.SchemaNotFoundError:
        return f"{obj['kind']} ({obj['apiVersion']}) does not exist in {KUBERNETES_VERSION}"
    return None


def _pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def _containers(workload: Mapping[str, Any]) -> list[dict[str, Any]]:
    pod = _pod_spec(workload)
    return [*pod.get("initContainers", []), *pod["containers"]]


def _stovepipe_containers(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any], Invocation]]:
    for kind in WORKLOADS:
        for workload in rendered.of_kind(kind):
            for container in _containers(workload):
                image = container["image"].rsplit("/", 1)[-1]
                assert image.split(":")[0].split("@")[0] == "stovepipe", (
                    f"{workload['metadata']['name']}: {container['image']} is not the image"
                )
                yield workload["metadata"]["name"], container, parse(container.get("args", []))


def _config(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory) -> StovepipeConfig:
    maps = [m for m in rendered.of_kind("ConfigMap") if "stovepipe.yaml" in m.get("data", {})]
    assert len(maps) == 1
    path = tmp_path_factory.mktemp(rendered.overlay) / "stovepipe.yaml"
    path.write_text(maps[0]["data"]["stovepipe.yaml"])
    return load_config(path, env={})


@pytest.fixture(scope="module")
def config(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory) -> StovepipeConfig:
    return _config(rendered, tmp_path_factory)


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) selects ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if not {
            "In": present and labels.get(key) in (values or []),
            "NotIn": not present or labels.get(key) not in (values or []),
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def _pod_labels(workload: Mapping[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_every_object_is_valid_for_the_pinned_kubernetes_version(rendered: Rendered) -> None:
    problems = [p for p in map(_validation_problem, rendered.objects) if p]
    assert problems == []


def test_the_schema_validation_is_not_vacuous(rendered: Rendered) -> None:
    deployment = copy.deepcopy(rendered.of_kind("Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["comand"] = ["stovepipe"]
    assert _validation_problem(deployment)
    deployment = copy.deepcopy(rendered.of_kind("Deployment")[0])
    deployment["spec"]["replicas"] = "three"
    assert _validation_problem(deployment)


def test_every_container_runs_a_real_stovepipe_verb(rendered: Rendered) -> None:
    verbs = set()
    for name, container, invocation in _stovepipe_containers(rendered):
        assert container.get("command", ["stovepipe"]) == ["stovepipe"], name
        verbs.add(invocation.verb)
        if invocation.verb in ("api", "worker", "db upgrade", "poller", "webhooks", "console"):
            assert str(invocation.params["config"]) == CONFIG_PATH, name
        if invocation.verb in ("ext git", "ext hooks"):
            assert option_value(invocation, "--config") == CONFIG_PATH, "its Queues"
    assert verbs == {
        "api",
        "worker",
        "db upgrade",
        "poller",
        "webhooks",
        "console",
        "ext git",
        "ext local-runner",
        "ext hooks",
        "ext project-mapper",
    }


def test_every_registered_stage_has_one_deployment_with_grpc_probes(rendered: Rendered) -> None:
    stages: list[str] = []
    for name, container, invocation in _stovepipe_containers(rendered):
        if invocation.verb != "worker":
            continue
        stages.append(invocation.params["stage"])
        port = invocation.params["health_port"]
        assert port is not None, f"{name}: no --health-port, so no health to probe"
        assert {"name": "health", "containerPort": port} in container["ports"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, f"{name}: {probe}"
        # a liveness probe must outlast the drain, when health says NOT_SERVING
        liveness = container["livenessProbe"]
        assert liveness["periodSeconds"] * liveness["failureThreshold"] > 30
    assert sorted(stages) == sorted(STAGE_NAMES)
    for deployment in rendered.of_kind("Deployment"):
        if _pod_labels(deployment).get("app.kubernetes.io/component") == "worker":
            pod = _pod_spec(deployment)
            assert pod["terminationGracePeriodSeconds"] > 30 + 10, "drain + closing clients"


def test_replicas_stay_within_the_partitions(rendered: Rendered, config: StovepipeConfig) -> None:
    for name, _container, invocation in _stovepipe_containers(rendered):
        if invocation.verb != "worker":
            continue
        replicas = rendered.named("Deployment", name)["spec"].get("replicas", 1)
        entry = stage(invocation.params["stage"])
        if entry.consumes or entry.watched_topics:
            assert replicas <= config.kafka.partitions, f"{name}: {replicas} replicas"
    runner = rendered.named("Deployment", "stovepipe-ext-local-runner")
    assert runner["spec"]["replicas"] == 1, "a build lives on the runner that started it"
    assert runner["spec"]["strategy"]["type"] == "Recreate"
    (hooks,) = [n for n, _, i in _stovepipe_containers(rendered) if i.verb == "worker"
                and i.params["stage"] == "hooks"]  # fmt: skip
    dispatcher = rendered.named("Deployment", hooks)
    # replicas share lanes through claims on the delivery rows: a rollout may overlap them
    assert dispatcher["spec"].get("strategy", {}).get("type", "RollingUpdate") == "RollingUpdate"


def test_ingress_processes_are_probed_and_served_where_they_listen(
    rendered: Rendered, config: StovepipeConfig
) -> None:
    """The poller and the webhook receiver answer gRPC health on --health-port; the
    receiver and the console sit behind a Service on the port their config listens on;
    the console is probed over HTTP(S) /healthz with the scheme it serves."""
    services = {s["metadata"]["name"]: s for s in rendered.of_kind("Service")}
    seen = set()
    for name, container, invocation in _stovepipe_containers(rendered):
        if invocation.verb in ("poller", "webhooks"):
            port = invocation.params["health_port"]
            assert port is not None, name
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"]["port"] == port, f"{name}: {probe}"
        if invocation.verb == "webhooks":
            assert config.webhooks is not None
            listen = config.webhooks.listen
        elif invocation.verb == "console":
            listen = config.console.listen
            scheme = "HTTPS" if (config.console.tls or config.api.tls) else "HTTP"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                get = container[probe]["httpGet"]
                assert (get["path"], get["port"], get["scheme"]) == ("/healthz", "http", scheme)
            assert config.console.api.address == f"stovepipe-api:{_port(config.api.listen)}"
            assert config.api.tls is None or config.console.api.ca_file, "verify the API"
        else:
            continue
        seen.add(invocation.verb)
        assert {"name": "http", "containerPort": _port(listen)} in container["ports"], name
        fronting = [
            s
            for s in services.values()
            if _selects(
                {"matchLabels": s["spec"]["selector"]},
                _pod_labels(rendered.named("Deployment", name)),
            )
        ]
        assert len(fronting) == 1, f"{name}: {len(fronting)} Services"
        assert [(p["port"], p["targetPort"]) for p in fronting[0]["spec"]["ports"]] == [
            (_port(listen), "http")
        ]
    assert seen == {"webhooks", "console"}


def test_servers_are_probed_where_they_serve_health_behind_their_service(
    rendered: Rendered, config: StovepipeConfig
) -> None:
    services = {s["metadata"]["name"]: s for s in rendered.of_kind("Service")}
    listening: dict[str, int] = {}
    for name, container, invocation in _stovepipe_containers(rendered):
        if invocation.verb == "api":
            port = _port(config.api.listen)
            # grpc probes speak no TLS: a TLS API is probed on its plaintext --health-port
            probed = invocation.params["health_port"] or port
            assert config.api.tls is None or probed != port, f"{name}: probes cannot do TLS"
        elif invocation.verb.startswith("ext "):
            listen = option_value(invocation, "--listen")
            assert listen is not None and listen.startswith("0.0.0.0:"), name
            port = probed = _port(listen)
        else:
            continue
        assert {"name": "grpc", "containerPort": port} in container["ports"], name
        if probed != port:
            assert {"name": "health", "containerPort": probed} in container["ports"], name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == probed, f"{name}: {probe}"
        fronting = [
            s
            for s in services.values()
            if _selects(
                {"matchLabels": s["spec"]["selector"]},
                _pod_labels(rendered.named("Deployment", name)),
            )
        ]
        assert len(fronting) == 1, f"{name}: {len(fronting)} Services"
        assert fronting[0]["spec"]["ports"] == [
            {"name": "grpc", "port": port, "targetPort": "grpc", "appProtocol": "kubernetes.io/h2c"}
        ]
        listening[fronting[0]["metadata"]["name"]] = port
    endpoints = [
        *config.extensions.sourcecontrol.values(),
        *config.extensions.buildrunner.values(),
        *config.extensions.hooks.values(),
        *config.extensions.projectmapper.values(),
    ]
    assert config.unaddressed_extensions() == ()
    for endpoint in endpoints:
        assert endpoint.address is not None
        host, port_text = endpoint.address.rsplit(":", 1)
        assert listening.get(host) == int(port_text), f"{endpoint.address}: no such Service"
    runner = next(i for _, _, i in _stovepipe_containers(rendered) if i.verb == "ext local-runner")
    assert option_value(runner, "--source-control") == (
        config.extensions.sourcecontrol["git"].address
    )


def test_the_api_will_serve_what_it_is_given(rendered: Rendered, config: StovepipeConfig) -> None:
    """The API's own start-up rule (no tokens in plaintext on a network) passes; prod
    serves TLS from a mounted Secret; only dev may wave the rule."""
    check_listener(config.api, has_tokens=bool(config.api.tokens))
    assert config.api.allow_insecure is (rendered.overlay == "dev")
    if rendered.overlay == "prod":
        assert config.api.tls is not None
    api = rendered.named("Deployment", "stovepipe-api")
    (container,) = _containers(api)
    volumes = {v["name"]: v for v in _pod_spec(api)["volumes"]}
    rendered_secrets = {s["metadata"]["name"] for s in rendered.of_kind("Secret")}
    for mount in container["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is not None and secret["secretName"] not in rendered_secrets:
            assert rendered.overlay == "prod" or secret.get("optional") is True, secret
    if config.api.tls is not None:
        for path in (config.api.tls.cert_file, config.api.tls.key_file):
            directory, file_name = path.rsplit("/", 1)
            mount = next(m for m in container["volumeMounts"] if m["mountPath"] == directory)
            assert mount["readOnly"] is True
            secret = volumes[mount["name"]]["secret"]
            assert file_name in ("tls.crt", "tls.key"), "the keys of a kubernetes.io/tls Secret"
            assert secret["secretName"] == "stovepipe-api-tls"


def test_migrations_run_as_a_job(rendered: Rendered) -> None:
    jobs = rendered.of_kind("Job")
    assert [j["metadata"]["name"] for j in jobs] == ["stovepipe-db-upgrade"]
    (container,) = _containers(jobs[0])
    assert parse(container["args"]).verb == "db upgrade"
    assert _pod_spec(jobs[0])["restartPolicy"] in ("Never", "OnFailure")


def test_every_pod_mounts_the_configuration(rendered: Rendered) -> None:
    (config_map,) = [m for m in rendered.of_kind("ConfigMap") if "stovepipe.yaml" in m["data"]]
    for kind in WORKLOADS:
        for workload in rendered.of_kind(kind):
            volumes = {v["name"]: v for v in _pod_spec(workload).get("volumes", [])}
            for container in _containers(workload):
                invocation = parse(container.get("args", []))
                if invocation.verb in ("ext local-runner", "ext project-mapper"):
                    continue  # they read no configuration
                mount = next(
                    m for m in container["volumeMounts"] if m["mountPath"] == "/etc/stovepipe"
                )
                assert mount.get("readOnly") is True
                source = volumes[mount["name"]]["configMap"]["name"]
                assert source == config_map["metadata"]["name"], workload["metadata"]["name"]


def test_secrets_are_referenced_never_written(rendered: Rendered, config: StovepipeConfig) -> None:
    secrets = rendered.of_kind("Secret")
    if rendered.overlay == "prod":
        assert secrets == [], "production Secrets are created in the cluster, not committed"
    for secret in secrets:
        assert secret["metadata"]["labels"]["stovepipe.dev/placeholder"] == "true"
        values = {**secret.get("stringData", {}), **secret.get("data", {})}
        assert all(v.startswith("PLACEHOLDER-") for v in values.values()), secret
    available = {(s["metadata"]["name"], key) for s in secrets for key in s.get("stringData", {})}
    core_env = {
        e.token_env
        for e in (
            *config.extensions.sourcecontrol.values(),
            *config.extensions.buildrunner.values(),
            *config.extensions.hooks.values(),
            *config.extensions.projectmapper.values(),
        )
        if e.token_env
    }
    hosts = config.webhooks.hosts() if config.webhooks else {}
    webhook_env = {s.secret_env for s in hosts.values() if s.secret_env}
    console_env = {
        env
        for env in (
            config.console.api.token_env,
            *(t.token_env for t in config.console.login_tokens),
        )
        if env
    }
    api_env = {t.token_env for t in config.api.tokens if t.token_env}
    assert config.api.tokens, "the API serves a network: it must authenticate its callers"
    for name, container, invocation in _stovepipe_containers(rendered):
        referenced: set[str] = set()
        for variable in container.get("env", []):
            if SECRETISH.search(variable["name"]) or variable["name"] == "PGPASSWORD":
                assert "value" not in variable, f"{name}: {variable['name']} is written out"
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference is None:
                continue
            referenced.add(variable["name"])
            if rendered.overlay == "dev":
                assert (reference["name"], reference["key"]) in available, reference
        needed: set[str] = set()
        # every process that opens the extension registry reads every addressed token
        if invocation.verb in ("api", "worker", "poller", "webhooks", "db upgrade"):
            needed.add("PGPASSWORD")
        if invocation.verb in ("api", "worker", "poller", "webhooks"):
            needed |= core_env
        if invocation.verb == "api":
            needed |= api_env
        if invocation.verb == "webhooks":
            needed |= webhook_env
        if invocation.verb == "console":
            needed |= console_env
        for option in ("--token-env", "--source-control-token-env"):
            value = option_value(invocation, option)
            if value is not None:
                needed.add(value)
        if invocation.verb.startswith("ext "):
            assert option_value(invocation, "--token-env") or option_value(
                invocation, "--token-file"
            ), f"{name}: an extension server must require a token"
        assert needed <= referenced, f"{name}: {sorted(needed - referenced)} not from a Secret"


def test_every_workload_has_resources_and_a_disruption_budget(rendered: Rendered) -> None:
    budgets = rendered.of_kind("PodDisruptionBudget")
    for workload in rendered.of_kind("Deployment"):
        name = workload["metadata"]["name"]
        covering = [b for b in budgets if _selects(b["spec"]["selector"], _pod_labels(workload))]
        assert len(covering) == 1, f"{name}: {len(covering)} PodDisruptionBudgets"
        assert "maxUnavailable" in covering[0]["spec"], f"{name}: minAvailable can block drains"
    for kind in WORKLOADS:
        for workload in rendered.of_kind(kind):
            pod = _pod_spec(workload)
            assert pod.get("automountServiceAccountToken") is False
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in _containers(workload):
                for bound in ("requests", "limits"):
                    assert set(container["resources"][bound]) >= {"cpu", "memory"}, (
                        f"{workload['metadata']['name']}: {bound}"
                    )
                assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_network_policies_open_the_api_only(rendered: Rendered, config: StovepipeConfig) -> None:
    policies = rendered.of_kind("NetworkPolicy")
    pods = {w["metadata"]["name"]: _pod_labels(w) for w in rendered.of_kind("Deployment")}
    job = rendered.named("Job", "stovepipe-db-upgrade")
    pods[job["metadata"]["name"]] = dict(job["spec"]["template"]["metadata"]["labels"])
    serving_metrics = {
        n for n, _, i in _stovepipe_containers(rendered) if "metrics_port" in i.params
    }
    for name, labels in pods.items():
        applying = [p for p in policies if _selects(p["spec"]["podSelector"], labels)]
        assert any(
            "Ingress" in p["spec"]["policyTypes"] and not p["spec"].get("ingress") for p in applying
        ), f"{name}: no default-deny policy applies"
        rules = [rule for p in applying for rule in p["spec"].get("ingress", [])]
        metrics_rule = {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": config.telemetry.metrics_port}],
        }
        if name in serving_metrics:
            assert metrics_rule in rules, f"{name}: Prometheus cannot scrape it"
            rules.remove(metrics_rule)
        else:
            assert metrics_rule not in rules, f"{name} serves no metrics"
        component = labels.get("app.kubernetes.io/component")
        if component == "api":
            assert rules == [{"ports": [{"protocol": "TCP", "port": _port(config.api.listen)}]}]
        elif component == "webhooks":
            assert config.webhooks is not None
            port = _port(config.webhooks.listen)
            assert rules == [{"ports": [{"protocol": "TCP", "port": port}]}], name
        elif component == "console":
            port = _port(config.console.listen)
            assert rules == [{"ports": [{"protocol": "TCP", "port": port}]}], name
        elif component == "extension":
            assert len(rules) == 1, name
            (peer,) = rules[0]["from"]
            assert peer == {
                "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "stovepipe"}}
            }
            (port,) = rules[0]["ports"]
            served = next(
                _port(option_value(i, "--listen") or "")
                for n, _, i in _stovepipe_containers(rendered)
                if n == name
            )
            assert port == {"protocol": "TCP", "port": served}
        else:
            assert rules == [], f"{name} ({component}) accepts connections"


def test_metrics_are_served_where_prometheus_is_told_to_scrape(
    rendered: Rendered, config: StovepipeConfig
) -> None:
    """Every process whose verb takes --metrics-port (the CLI says which: the API and
    the stage workers today) serves /metrics on telemetry.metrics_port (given no
    --metrics-port here), and its pod says so; the others serve none. A verb that
    gains the option fails here until its pod declares the port."""
    port = config.telemetry.metrics_port
    assert port is not None
    served = set()
    for name, container, invocation in _stovepipe_containers(rendered):
        serves = "metrics_port" in invocation.params
        if serves:
            served.add(invocation.verb)
            assert invocation.params["metrics_port"] is None, f"{name}: one port, the config's"
        annotations = rendered.named("Deployment", name)["spec"]["template"]["metadata"].get(
            "annotations", {}
        ) if invocation.verb != "db upgrade" else {}  # fmt: skip
        declared = {"name": "metrics", "containerPort": port} in container.get("ports", [])
        if serves:
            assert declared, name
            assert annotations.get("prometheus.io/port") == str(port), name
        else:
            assert not declared and "prometheus.io/port" not in annotations, name
    assert {"api", "worker"} <= served


def test_the_autoscaler_is_an_example_outside_the_overlays(rendered: Rendered) -> None:
    assert rendered.of_kind("HorizontalPodAutoscaler") == []
    examples = list(
        yaml.safe_load_all((KUBERNETES / "examples" / "hpa-consumer-lag.yaml").read_text())
    )
    for example in examples:
        assert _validation_problem(example) is None
        if example["kind"] == "HorizontalPodAutoscaler":
            target = example["spec"]["scaleTargetRef"]["name"]
            rendered.named("Deployment", target)
            assert example["spec"]["maxReplicas"] <= 3  # base kafka.partitions
