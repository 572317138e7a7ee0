"""The ``projects`` of a Queue: accepted when they can run, refused with the reason otherwise."""

from __future__ import annotations

from typing import Any

from harness.config_factory import problems_of, queue
from stovepipe.config import config_from_mapping
from stovepipe.extensions.sourcecontrol.git import served_from_config

TARGETS = {
    "targets": [
        {"name": "web-test", "command": "x"},
        {"name": "api-test", "command": "x"},
    ]
}


def _projects(*projects: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"queues": [queue(build=TARGETS, projects=list(projects), **extra)]}


WEB = {"name": "web", "paths": ["web/**"], "targets": ["web-*"], "promotion_ref": "verified-web"}
API = {"name": "api", "paths": ["api/**"], "targets": ["api-*"], "weight": 2}


def test_projects_are_accepted_with_defaults() -> None:
    config = config_from_mapping(_projects(WEB, API), "stovepipe.yaml")
    q = config.queues[0]
    assert q.project_names == ("web", "api")
    assert q.inherit_unaffected is True and q.project_mapper == "config"
    assert q.project("api") is not None and q.project("api").weight == 2  # type: ignore[union-attr]
    assert q.project("mobile") is None
    assert q.projects[0].owns_target("web-test") and not q.projects[0].owns_target("api-test")
    assert config.unaddressed_extensions() == (
        "extensions.sourcecontrol.git",
        "extensions.buildrunner.local",
        "extensions.projectmapper.config",
    )


def test_a_project_promotion_ref_is_served_by_the_git_extension() -> None:
    served = served_from_config(config_from_mapping(_projects(WEB, API), "stovepipe.yaml"))
    assert any("verified-web" in line for line in served.describe())


def test_a_target_outside_every_project_is_refused() -> None:
    (line,) = problems_of(_projects(WEB))
    assert "target 'api-test' belongs to no project" in line


def test_a_project_matching_no_target_is_refused() -> None:
    lines = problems_of(_projects(WEB, API, {"name": "docs", "targets": ["docs-*"]}))
    assert any("projects[2]" in line and "no build target matches" in line for line in lines)


def test_bad_project_names_weights_and_repeats_are_refused() -> None:
    assert any("not a project name" in x for x in problems_of(_projects({**WEB, "name": "Web!"})))
    assert any("weight" in x for x in problems_of(_projects({**WEB, "weight": 0}, API)))
    assert any("already projects[0]" in x for x in problems_of(_projects(WEB, API, WEB)))


def test_a_project_promotion_ref_must_not_be_the_validated_branch() -> None:
    lines = problems_of(_projects({**WEB, "promotion_ref": "main"}, API))
    assert any("must differ from source.ref" in line for line in lines)


def test_an_undeclared_project_mapper_is_refused() -> None:
    lines = problems_of(
        {
            **_projects(WEB, API, project_mapper="custom"),
            "extensions": {"projectmapper": {"config": {}}},
        }
    )
    assert any("'custom' is not declared under extensions.projectmapper" in x for x in lines)
