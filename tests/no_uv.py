"""A PATH as on a machine without uv: python3 (3.11+) and the few tools the Makefiles use."""

import shutil
import sys
from pathlib import Path

# What the Makefile recipes call by name, besides python3 (make runs them with /bin/sh).
TOOLS_BY_NAME = ("touch", "rm", "mkdir", "cat", "sh")


def path_without_uv(tmp_path: Path) -> str:
    """A PATH of one folder: python3 (the interpreter behind these tests) and TOOLS_BY_NAME."""
    folder = tmp_path / "bin-without-uv"
    folder.mkdir()
    # The base interpreter, not this venv's: what a user's python3 would be.
    base = str(getattr(sys, "_base_executable", sys.executable))
    (folder / "python3").symlink_to(Path(base).resolve())
    for name in TOOLS_BY_NAME:
        found = shutil.which(name)
        assert found is not None, f"{name} is not installed"
        (folder / name).symlink_to(found)
    path = str(folder)
    assert shutil.which("uv", path=path) is None
    return path
