"""Regenerate the Python stubs from proto/ (run: make proto).

The output tree is a parameter so the freshness test can generate into a
temporary directory and compare with what is committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
PACKAGES = ("stovepipe/v1", "stovepipe/ext/v1")


def generate(out: Path) -> list[Path]:
    """Generate message, gRPC and typing stubs for every .proto under proto/ into ``out``."""
    files = sorted(
        str(p.relative_to(PROTO)) for pkg in PACKAGES for p in (PROTO / pkg).glob("*.proto")
    )
    include = Path(protoc.__file__).parent / "_proto"
    bindir = Path(sys.executable).parent
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    out.mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the message above")
    written = []
    for pkg in PACKAGES:
        pkg_dir = out / pkg
        for parent in (pkg_dir, *pkg_dir.parents):
            if parent == out or not str(parent).startswith(str(out)):
                break
            init = parent / "__init__.py"
            if parent.name != "stovepipe" and not init.exists():
                init.write_text(
                    '"""Generated from proto/ by scripts/gen_proto.py; do not edit."""\n'
                )
        written.extend(sorted(pkg_dir.glob("*")))
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "services"
    for path in generate(target):
        print(path.relative_to(target))
