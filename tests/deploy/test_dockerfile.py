"""deploy/Dockerfile and .dockerignore, parsed: pinned base, non-root, no secrets,
``stovepipe`` as ENTRYPOINT and a HEALTHCHECK that is a real ``stovepipe health`` call.

No container engine runs in the suite, so the file is read as data; the
commands in it go through the CLI's own parser (``harness.stovepipe_argv``).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.stovepipe_argv import parse

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"  # the build context is the repository root
SECRETISH = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|PRIVATE_KEY|API_KEY", re.I)
HIGH_ENTROPY = re.compile(r"[A-Za-z0-9+/_-]{32,}")
PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        pending += stripped
        keyword, _, arguments = pending.partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def stages(parsed: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage, each starting with its FROM."""
    grouped: list[list[Instruction]] = []
    for instruction in parsed:
        if instruction.keyword == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(instruction)
    return grouped


def _flags_removed(arguments: str) -> list[str]:
    return [word for word in shlex.split(arguments) if not word.startswith("--")]


def _variables(instruction: Instruction) -> dict[str, str]:
    """``ENV``/``ARG`` names and values (``KEY=VALUE`` pairs, or ``KEY VALUE``)."""
    words = shlex.split(instruction.arguments)
    if instruction.keyword == "ENV" and len(words) == 2 and "=" not in words[0]:
        return {words[0]: words[1]}
    return {key: value for key, _, value in (word.partition("=") for word in words)}


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not the exec (JSON) form: {arguments}"
    return [str(v) for v in value]


@pytest.fixture(scope="module")
def parsed() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(parsed: list[Instruction]) -> list[Instruction]:
    return stages(parsed)[-1]


def test_the_parser_reads_continuations_and_comments() -> None:
    text = "# c\nFROM a:1.2.3 AS b\nRUN x \\\n  # inside\n  && y\n\nUSER 1\n"
    assert instructions(text) == [
        Instruction("FROM", "a:1.2.3 AS b"),
        Instruction("RUN", "x && y"),
        Instruction("USER", "1"),
    ]


def test_multi_stage_build_on_a_pinned_slim_python_311(parsed: list[Instruction]) -> None:
    built = stages(parsed)
    assert len(built) >= 2, "build the wheel in one stage, install it in another"
    names: set[str] = set()
    for stage in built:
        words = _flags_removed(stage[0].arguments)
        image = words[0]
        if image not in names:
            assert PINNED.match(image) and ("@sha256:" in image or re.search(r":\d", image)), (
                f"{image} is not pinned to an exact version or digest"
            )
            assert image.startswith("python:3.11.") and "slim" in image, image
        if len(words) == 3 and words[1].upper() == "AS":
            names.add(words[2])
    builder = built[0]
    builder_name = _flags_removed(builder[0].arguments)[-1]
    assert any("pip wheel" in i.arguments for i in builder if i.keyword == "RUN")
    copied = [_flags_removed(i.arguments)[:-1] for i in builder if i.keyword == "COPY"]
    assert ["services"] in copied
    assert ["extensions"] in copied
    assert any(
        i.keyword in ("RUN", "COPY") and f"from={builder_name}" in i.arguments for i in built[-1]
    ), "the runtime stage installs what the build stage built"


def test_runs_as_a_numeric_non_root_user(final: list[Instruction]) -> None:
    users = [i.arguments for i in final if i.keyword == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) > 0, f"USER {users[-1]} (numeric, so runAsNonRoot works)"


def test_no_secret_is_baked_in(parsed: list[Instruction]) -> None:
    for instruction in parsed:
        if instruction.keyword in ("ENV", "ARG"):
            for key, value in _variables(instruction).items():
                assert not SECRETISH.search(key), f"{instruction.keyword} {key}"
                assert not HIGH_ENTROPY.search(value), f"{key} holds what looks like a secret"
        if instruction.keyword in ("COPY", "ADD") and "--from" not in instruction.arguments:
            for source in _flags_removed(instruction.arguments)[:-1]:
                assert not re.search(r"\.env|\.pem|\.key|secret|stovepipe\.ya?ml", source), source
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"


def test_entrypoint_is_stovepipe_and_the_runtime_has_git_and_bubblewrap(
    final: list[Instruction],
) -> None:
    entrypoints = [i for i in final if i.keyword == "ENTRYPOINT"]
    assert entrypoints
    assert _exec_form(entrypoints[-1].arguments) == ["stovepipe"]
    installs = " ".join(i.arguments for i in final if i.keyword == "RUN")
    assert "apt-get install" in installs
    for package in ("bubblewrap", "git"):
        assert re.search(rf"\s{package}\s", installs), f"{package} is not installed"


def test_healthcheck_is_a_real_stovepipe_health_call_on_the_default_health_port(
    final: list[Instruction], monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = [i for i in final if i.keyword == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    options, _, command = checks[-1].arguments.partition("CMD ")
    assert "--interval=" in options
    argv = _exec_form(command)
    assert argv[0] == "stovepipe"
    image_env: dict[str, str] = {}
    for instruction in final:
        if instruction.keyword == "ENV":
            image_env.update(_variables(instruction))
    for key, value in image_env.items():
        monkeypatch.setenv(key, value)  # the probe runs with the image's environment
    probe = parse(argv[1:])
    assert probe.verb == "health"
    for default in (["worker", "process"], ["api"]):  # their health port in the image
        assert probe.params["address"] == f"127.0.0.1:{parse(default).params['health_port']}"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` out of the context: the last pattern that
    matches the path or one of its parents decides (``!`` re-includes)."""

    def regex(pattern: str) -> re.Pattern[str]:
        out, index = "", 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                out, index = out + "(?:.*/)?", index + 3
            elif pattern.startswith("**", index):
                out, index = out + ".*", index + 2
            elif pattern[index] == "*":
                out, index = out + "[^/]*", index + 1
            elif pattern[index] == "?":
                out, index = out + "[^/]", index + 1
            elif pattern[index] == "[":
                end = pattern.index("]", index)
                out, index = out + pattern[index : end + 1], end + 1
            else:
                out, index = out + re.escape(pattern[index]), index + 1
        return re.compile(out)

    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/")
        if any(regex(pattern).fullmatch(candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def test_dockerignore_lets_in_only_what_the_wheel_is_built_from() -> None:
    assert DOCKERIGNORE.exists(), "the build context (the repository root) needs .dockerignore"
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    kept_out = [
        ".git/HEAD",
        ".venv/bin/python",
        ".env",
        "stovepipe.yaml",
        ".stovepipe/stovepipe.db",
        "tests/conftest.py",
        "deploy/compose/compose.yaml",
        "services/stovepipe/__pycache__/redaction.cpython-311.pyc",
        "secrets/token",
    ]
    for path in kept_out:
        assert _ignored(path, patterns), f"{path} would be sent to the builder"
    for path in [
        "pyproject.toml",
        "README.md",
        "services/stovepipe/cli/main.py",
        "extensions/stovepipe/extensions/buildrunner/local/server.py",
        "services/stovepipe/storage/migrations/script.py.mako",
    ]:
        assert (REPO / path).exists(), path
        assert not _ignored(path, patterns), f"{path} is needed by the build stage"
