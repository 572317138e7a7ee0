"""The whole of ``stovepipe.yaml``: ``StovepipeConfig``, the rules across its sections,
and the lookups the service needs.

Section models live in ``sections`` (service-wide) and ``queues`` (per Queue).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Self

from pydantic import model_validator

from stovepipe.config.base import ConfigModel, Loc, raise_problems
from stovepipe.config.errors import ConfigProblem, SecretUnavailable, UnknownQueue
from stovepipe.config.queues import QueueConfig, branch
from stovepipe.config.secrets import resolve_secret
from stovepipe.config.sections import (
    ApiConfig,
    ConsoleConfig,
    Endpoint,
    ExtensionsConfig,
    KafkaConfig,
    StorageConfig,
    TelemetryConfig,
    WorkersConfig,
)
from stovepipe.config.webhooks import WebhooksConfig


def cross_section_problems(
    extensions: ExtensionsConfig | None, queues: Iterable[tuple[int, QueueConfig]]
) -> list[tuple[Loc, str]]:
    """What is wrong between ``queues`` (each with its index in the file), or between a
    Queue and ``extensions`` (unchecked when ``None``): a repeated name, an undeclared
    extension, a ref of one repository promoted by two Queues.

    The loader also runs this over the Queues that are valid on their own when others
    are not, so these problems come in the same pass as the field errors.
    """
    problems: list[tuple[Loc, str]] = []
    names: dict[str, int] = {}
    promoted: dict[tuple[str, str], int] = {}
    queues = list(queues)
    for i, queue in queues:
        if (first := names.setdefault(queue.name, i)) != i:
            message = f"queue name {queue.name!r} is already used by queues[{first}]"
            problems.append((("queues", i, "name"), message))
        if extensions is not None:
            for kind, loc, name in (
                ("sourcecontrol", ("source", "extension"), queue.source.extension),
                ("buildrunner", ("build", "runner"), queue.build.runner),
                *(
                    [("projectmapper", ("project_mapper",), queue.project_mapper)]
                    if queue.projects
                    else []
                ),
            ):
                declared: Mapping[str, Endpoint] = getattr(extensions, kind)
                if name not in declared:
                    offered = ", ".join(sorted(declared)) or "none"
                    message = (
                        f"{name!r} is not declared under extensions.{kind} (declared: {offered})"
                    )
                    problems.append((("queues", i, *loc), message))
            for h, hook in enumerate(queue.hooks):
                if hook.kind not in extensions.hooks:
                    offered = ", ".join(sorted(extensions.hooks)) or "none"
                    message = (
                        f"{hook.kind!r} is not declared under extensions.hooks "
                        f"(declared: {offered})"
                    )
                    problems.append((("queues", i, "hooks", h, "kind"), message))
        if queue.promotion_ref is not None:
            target = (queue.source.repository, branch(queue.promotion_ref))
            if (first := promoted.setdefault(target, i)) != i:
                message = f"queues[{first}] already promotes {target[1]!r} in the same repository"
                problems.append((("queues", i, "promotion_ref"), message))
    problems.extend(dependency_problems(queues))
    return problems


def dependency_problems(queues: Iterable[tuple[int, QueueConfig]]) -> list[tuple[Loc, str]]:
    """``depends_on`` must name other configured Queues and form no cycle."""
    listed = list(queues)
    index: dict[str, int] = {}
    for i, queue in listed:
        index.setdefault(queue.name, i)
    known = ", ".join(index) or "none"
    problems: list[tuple[Loc, str]] = []
    graph: dict[str, list[str]] = {}
    for i, queue in listed:
        edges: list[str] = []
        for k, dep in enumerate(queue.depends_on):
            loc: Loc = ("queues", i, "depends_on", k)
            if dep == queue.name:
                problems.append((loc, "a queue cannot depend on itself"))
            elif dep not in index:
                problems.append((loc, f"{dep!r} is not a configured queue (known: {known})"))
            else:
                edges.append(dep)
        if index.get(queue.name) == i:
            graph[queue.name] = edges
    for cycle in _cycles(graph):
        start = min(cycle, key=lambda name: index[name])
        at = cycle.index(start)
        ordered = [*cycle[at:], *cycle[:at], start]
        problems.append(
            (("queues", index[start], "depends_on"), "forms a cycle: " + " -> ".join(ordered))
        )
    return problems


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle through every group of mutually dependent Queues. Iterative: Queues
    that depend on nothing left are peeled off until only cycles remain."""
    remaining = {name: [d for d in deps if d in graph] for name, deps in graph.items()}
    changed = True
    while changed:
        changed = False
        for name in list(remaining):
            if not any(dep in remaining for dep in remaining[name]):
                del remaining[name]
                changed = True
    found: list[list[str]] = []
    seen: set[str] = set()
    for start in remaining:
        if start in seen:
            continue
        path: list[str] = []
        position: dict[str, int] = {}
        node = start
        while node not in position:
            position[node] = len(path)
            path.append(node)
            node = next(dep for dep in remaining[node] if dep in remaining)
        cycle = path[position[node] :]
        if not seen.intersection(cycle):
            found.append(cycle)
        seen.update(path)
    return found


class StovepipeConfig(ConfigModel):
    """A validated configuration. Build it with ``load_config`` or ``config_from_mapping``."""

    storage: StorageConfig = StorageConfig()
    kafka: KafkaConfig = KafkaConfig()
    api: ApiConfig = ApiConfig()
    console: ConsoleConfig = ConsoleConfig()
    extensions: ExtensionsConfig = ExtensionsConfig()
    workers: WorkersConfig = WorkersConfig()
    webhooks: WebhooksConfig | None = None
    telemetry: TelemetryConfig = TelemetryConfig()
    queues: tuple[QueueConfig, ...] = ()

    @model_validator(mode="after")
    def _sections_agree(self) -> Self:
        problems = cross_section_problems(self.extensions, enumerate(self.queues))
        if problems:
            raise_problems(type(self).__name__, None, problems)
        return self

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

    @property
    def polled_queues(self) -> tuple[QueueConfig, ...]:
        """The Queues with a ``poll`` section, paused ones included."""
        return tuple(q for q in self.queues if q.poll is not None)

    def dependents_of(self, name: str) -> tuple[str, ...]:
        """The Queues that list ``name`` in ``depends_on``, in file order."""
        return tuple(q.name for q in self.queues if name in q.depends_on)

    def api_tokens(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Secret token → role for the API, read now from the environment or files.

        Raises ``SecretUnavailable`` naming every variable or file that could not be read,
        and every token whose secret another token has too: a caller's role would depend
        on which entry happened to be read last.
        """
        roles: dict[str, str] = {}
        owners: dict[str, str] = {}
        problems: list[ConfigProblem] = []
        for token in self.api.tokens:
            try:
                secret = resolve_secret(token, env)
            except SecretUnavailable as exc:
                problems.extend(ConfigProblem(exc.source, p.message) for p in exc.problems)
                continue
            if secret in owners:
                message = f"has the same secret as api token {owners[secret]!r}; "
                problems.append(
                    ConfigProblem(
                        f"api token {token.name!r}", message + "give every caller its own token"
                    )
                )
                continue
            owners[secret] = token.name
            roles[secret] = token.role
        if problems:
            raise SecretUnavailable("api.tokens", problems)
        return roles

    def unaddressed_extensions(self) -> tuple[str, ...]:
        """Extensions the Queues use that have no address (``stovepipe up`` starts those;
        anywhere else they are a deployment error worth reporting before starting)."""
        used = {
            "sourcecontrol": {queue.source.extension for queue in self.queues},
            "buildrunner": {queue.build.runner for queue in self.queues},
            "hooks": {hook.kind for queue in self.queues for hook in queue.hooks},
            "projectmapper": {q.project_mapper for q in self.queues if q.projects},
        }
        missing: list[str] = []
        for kind, names in used.items():
            endpoints: Mapping[str, Endpoint] = getattr(self.extensions, kind)
            for name in sorted(names):
                endpoint = endpoints.get(name)
                if endpoint is None or endpoint.address is None:
                    missing.append(f"extensions.{kind}.{name}")
        return tuple(missing)
