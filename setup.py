"""Package discovery for the design-card layout.

`backends/` and `launchers/` live at the top level of the repo but install as
`alchemiscale_local.backends` and `alchemiscale_local.launchers` (the mapping is
in pyproject.toml's `package-dir`). setuptools' automatic discovery cannot follow
that mapping, so the package list is derived here from the folders on disk.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
MAPPING = {
    "alchemiscale_local": "alchemiscale_local",
    "alchemiscale_local.backends": "backends",
    "alchemiscale_local.launchers": "launchers",
}


def _packages() -> list[str]:
    found = []
    for dotted, folder in MAPPING.items():
        base = ROOT / folder
        for init in sorted(base.rglob("__init__.py")):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found.append(".".join([dotted, *rel.parts]) if rel.parts else dotted)
    return found


setup(packages=_packages())
