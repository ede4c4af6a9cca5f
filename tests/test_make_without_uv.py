"""The template's own Makefile works where uv is not installed: it installs uv into its venv.

Slow-ish (about 20 s): pip downloads uv, as it would on such a machine. The venv step is run
in a copy of the Makefile with an empty requirements.txt, so nothing else is installed.
"""

import shutil
from pathlib import Path

from tests.conftest import TEMPLATE_DIR, require_binary, run
from tests.no_uv import path_without_uv

BOOTSTRAP_MESSAGE = "uv is not on PATH: installing it into .venv with pip"


def test_the_venv_step_installs_uv_with_pip_when_path_has_none(tmp_path: Path) -> None:
    make = require_binary("make")
    template = tmp_path / "template"
    template.mkdir()
    shutil.copy(TEMPLATE_DIR / "Makefile", template / "Makefile")
    (template / "requirements.txt").write_text("")
    # What the recipes, the tests and the projects they bake find as `uv`.
    (template / "which-uv.mk").write_text("which-uv:\n\t@command -v uv\n")
    env = {"PATH": path_without_uv(tmp_path)}

    output = run([make, ".venv/.installed"], cwd=template, env=env)
    assert BOOTSTRAP_MESSAGE in output
    assert (template / ".venv" / "bin" / "uv").is_file()
    assert (template / ".venv" / ".installed").is_file()
    found = run([make, "-s", "-f", "Makefile", "-f", "which-uv.mk", "which-uv"], template, env)
    assert found.strip() == str(template / ".venv" / "bin" / "uv")

    # A later change of requirements.txt reinstalls with that uv, without installing it again.
    (template / "requirements.txt").write_text("# nothing\n")
    output = run([make, ".venv/.installed"], cwd=template, env=env)
    assert BOOTSTRAP_MESSAGE not in output
    assert "uv pip install" in output
