"""Ships rules/ and web/ (beside the package in a checkout) as data under <prefix>/share/guardian,
where an installed Guardian (a venv, the .deb) finds them. Everything else is in setup.cfg."""

import os

from setuptools import setup


def tree(top: str) -> list[tuple[str, list[str]]]:
    return [(os.path.join("share", "guardian", root), sorted(os.path.join(root, name) for name in files))
            for root, dirs, files in sorted(os.walk(top)) if files and "__pycache__" not in root]


setup(data_files=tree("rules") + tree("web"))
