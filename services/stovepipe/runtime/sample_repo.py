"""A small git repository whose history is green, then broken, then fixed.

Used by ``stovepipe demo`` and by the end-to-end tests, so both exercise the
real git extension and real build targets (Python's unittest) on real commits.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

_CALC_GOOD = "def add(a, b):\n    return a + b\n"
_CALC_BROKEN = "def add(a, b):\n    return a - b\n"
_TEST = (
    "import sys\nimport unittest\n\nsys.path.insert(0, 'src')\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\n"
    "if __name__ == '__main__':\n    unittest.main()\n"
)

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Stovepipe Demo",
    "GIT_AUTHOR_EMAIL": "demo@stovepipe.invalid",
    "GIT_COMMITTER_NAME": "Stovepipe Demo",
    "GIT_COMMITTER_EMAIL": "demo@stovepipe.invalid",
}


@dataclass(frozen=True)
class Step:
    title: str
    files: dict[str, str | None]
    expect_green: bool


STEPS = (
    Step(
        "add calculator with tests",
        {"src/calc.py": _CALC_GOOD, "tests/test_calc.py": _TEST, "README.md": "# calc\n"},
        True,
    ),
    Step("break add()", {"src/calc.py": _CALC_BROKEN}, False),
    Step("fix add()", {"src/calc.py": _CALC_GOOD}, True),
)


SANDBOX_PYTHON = "python3"
"""Found through ``PATH`` inside the build sandbox: the interpreter running Stovepipe
may live where the sandbox's unprivileged build user cannot reach (``/root``)."""


def build_targets() -> list[dict[str, object]]:
    """The Queue's targets: the unit tests run on source/test changes, docs on README changes."""
    return [
        {
            "name": "unit-tests",
            "command": f"{SANDBOX_PYTHON} tests/test_calc.py",
            "paths": ["src/**", "tests/**"],
            "timeout_seconds": 120,
        },
        {
            "name": "docs",
            "command": "test -s README.md",
            "paths": ["README.md"],
            "timeout_seconds": 30,
        },
    ]


class SampleRepo:
    """A git repository on disk that the demo moves forward one commit at a time."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        self.branch = branch

    def git(self, *args: str) -> str:
        env = {**os.environ, **GIT_IDENTITY}
        done = subprocess.run(
            ["git", *args], cwd=self.path, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def init(self) -> SampleRepo:
        self.path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", f"--initial-branch={self.branch}")
        self.git("config", "commit.gpgsign", "false")
        return self

    def commit(self, step: Step) -> str:
        """Write the step's files, commit on the branch, return the full hash."""
        for rel, content in step.files.items():
            target = self.path / rel
            if content is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self.git("add", "--all")
        self.git("commit", "--quiet", "-m", step.title)
        return self.git("rev-parse", "HEAD")

    def rewrite_last(self, title: str, files: dict[str, str | None]) -> str:
        """Replace the branch tip with a different commit (a force push)."""
        self.git("reset", "--quiet", "--hard", "HEAD~1")
        return self.commit(Step(title, files, True))

    def ref(self, name: str) -> str | None:
        try:
            return self.git("rev-parse", "--verify", "--quiet", f"refs/heads/{name}")
        except subprocess.CalledProcessError:
            return None
