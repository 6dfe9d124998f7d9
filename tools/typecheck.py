#!/usr/bin/env python3
"""Run mypy (strict, settings in pyproject.toml) over e2kchar and e2kchar.devices.

    tools/typecheck.py [extra mypy arguments]

e2kchar.devices lives in devices/ (setuptools' package-dir), which mypy cannot follow: it
finds packages by folder, and the editable install's import hook is invisible to it. So this
builds a mirror tree of symlinks in a temporary folder (e2kchar/... and e2kchar/devices/...),
runs mypy there, and prints its report with the repository's own paths.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _mirror(src: Path, dst: Path) -> None:
    """dst gets a symlink per .py/.pyi/py.typed file of src, folders recreated."""
    for path in src.rglob("*"):
        if path.is_file() and (path.suffix in (".py", ".pyi") or path.name == "py.typed"):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)


def main(argv: list[str] | None = None) -> int:
    extra = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory(prefix="e2kchar-mypy-") as tmp:
        tree = Path(tmp)
        _mirror(ROOT / "e2kchar", tree / "e2kchar")
        _mirror(ROOT / "devices", tree / "e2kchar" / "devices")
        cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "--cache-dir", str(ROOT / ".mypy_cache"), *extra, "-p", "e2kchar"]
        p = subprocess.run(cmd, cwd=tree, capture_output=True, text=True,
                           env={**os.environ, "MYPYPATH": str(tree)})
    out = (p.stdout + p.stderr).replace("e2kchar/devices/", "devices/")
    sys.stdout.write(out)
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
