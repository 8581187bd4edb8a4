"""What a normal (non-editable) install ships: every module and data file of the package.

The tests run on an editable install, which sees the source tree whatever pyproject lists, so
a package missing from ``[tool.setuptools] packages`` (as ``langgraph_moa.serve`` once was:
``moa`` then failed at start on a wheel install) passes every other test. This checks the list
against the tree; the slow wheel test in ``test_typing.py`` checks a built wheel.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "langgraph_moa"


def package_dirs() -> set[str]:
    """Dotted names of the package's folders that hold Python files (links followed: graphs/,
    nodes/ and prompts/ are links into the package)."""
    found = set()
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if any(f.endswith(".py") for f in files):
            found.add(".".join(Path(folder).relative_to(ROOT).parts))
    return found


def test_every_python_folder_of_the_package_is_listed_in_pyproject() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is 3.11+")
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    assert {"langgraph_moa.graphs", "langgraph_moa.nodes", "langgraph_moa.serve"} <= package_dirs()
    assert package_dirs() - listed == set(), "add these to [tool.setuptools] packages"
    assert set(setuptools["package-data"]) <= listed, "package-data of a package not listed"
