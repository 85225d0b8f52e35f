"""Carries web/ (without node_modules) and patches/ into the wheel as builder/_data/: the CLI serves the
playground and builds TVM's web runtime from them (builder/paths.py finds them). Metadata is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA = ("web", "patches")
SKIP = shutil.ignore_patterns("node_modules", "__pycache__", "*.pyc", ".DS_Store")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout's folders directly
            return
        for name in DATA:
            dst = Path(self.build_lib) / "builder" / "_data" / name
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(ROOT / name, dst, ignore=SKIP)


setup(cmdclass={"build_py": BuildPyWithData})
