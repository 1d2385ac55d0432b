"""Science tests: real gufe + openfe protocols. They need the science environment
(``.venv-science``, or a conda env with openfe); each module skips itself without them
(a conftest cannot skip: pytest reports that as a collection error).

``openfe_demo`` loads ``examples/openfe_rbfe.py`` (the network, settings and report the
demo uses) so the tests exercise the same chemistry a user runs. The estimates of the
openfe e2e run are printed in the terminal summary (no ``-s`` needed) and kept as JSON.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SUMMARY_KEY = pytest.StashKey[list[Path]]()


def load_example(name: str) -> ModuleType:
    """An example script as a module (registered first: its dataclasses need sys.modules)."""
    module_name = f"examples_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def openfe_demo() -> ModuleType:
    return load_example("openfe_rbfe")


@pytest.fixture(scope="session")
def science_summaries(request: pytest.FixtureRequest) -> list[Path]:
    """JSON files whose contents the terminal summary prints (register a path to show it)."""
    return request.config.stash.setdefault(SUMMARY_KEY, [])


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    for path in config.stash.get(SUMMARY_KEY, []):
        if not path.exists():
            continue
        terminalreporter.section(f"science results ({path})")
        data = json.loads(path.read_text())
        for line in data.get("lines", []):
            terminalreporter.write_line(line)
