"""What `pip install .` (and so the image) ships: every package of the source tree.

pyproject.toml lists the packages by hand (setuptools cannot mix discovery with the
operator/ -> konsul_operator mapping), so a new subpackage missing from the list installs
nowhere but an editable checkout: the image then fails at start with ModuleNotFoundError.
"""

from __future__ import annotations

import tomllib

from tests.processes import REPO


def test_every_package_of_the_source_tree_is_in_the_distribution() -> None:
    with open(REPO / "pyproject.toml", "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    roots = {name: REPO / path for name, path in setuptools["package-dir"].items()}
    roots.setdefault("konsul", REPO / "konsul")
    found = set()
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            found.add(".".join((name, *parts)))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
