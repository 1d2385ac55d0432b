"""Which gufe is installed, and whether it can load documents that a newer gufe wrote.

gufe 1.12 added ``Transformation.metadata`` (written as ``{}``); gufe 1.10, the one in the openfe
set of the science env, refuses it (``TypeError``), so 1.12-written fixtures (the TYK2 networks,
the generated gufe fixtures) cannot load there. Tests that load them through gufe skip with that
reason, and only then; everything else they check runs without gufe.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from typing import Any

import pytest


@functools.lru_cache(maxsize=1)
def gufe_version() -> str | None:
    if importlib.util.find_spec("gufe") is None:
        return None
    import gufe

    return str(gufe.__version__)


@functools.lru_cache(maxsize=1)
def gufe_reads_metadata() -> bool:
    """Whether the installed gufe's Transformation takes ``metadata`` (gufe >= 1.12)."""
    from gufe import Transformation

    return "metadata" in inspect.signature(Transformation.__init__).parameters


def writes_metadata(chain: list) -> bool:
    """Whether a keyed chain holds (Non)Transformations with ``metadata`` (written by gufe >= 1.12)."""
    return any(
        d.get("__qualname__") in ("Transformation", "NonTransformation") and "metadata" in d for _, d in chain
    )


def require_gufe_that_loads(chain: list, what: str) -> Any:
    """Skip unless gufe is installed and can load ``chain``; returns the gufe module."""
    gufe = pytest.importorskip("gufe", reason=f"loading {what} as gufe objects needs gufe (the science env)")
    if writes_metadata(chain) and not gufe_reads_metadata():
        pytest.skip(
            f"{what} was written by gufe >= 1.12 (Transformation.metadata); the installed gufe "
            f"{gufe_version()} cannot load it (its other checks run without gufe)"
        )
    return gufe
