"""The TOY runtime: a protocol for smoke tests and examples. Its numbers are not chemistry.

Documents name this package as the ``__module__`` of ``ToyProtocol``, ``ToySettings``,
``ToyUnit`` and ``ToyProtocolResult``. Where gufe is importable these names are real gufe
classes (``gufe_protocol``): documents load through gufe, DAGs run under ``execute_DAG`` and
results gather into a gufe ProtocolResult. Without gufe, ``ToyProtocol`` and ``ToySettings`` are
the plain keyed-chain producers of ``protocol``. The names resolve on first use, so importing
this package never imports gufe (the server and the service's parent process stay light).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .network import MAX_TRANSFORMATIONS, build_toy_network, load_components
from .protocol import TOY_MODULE, TOY_NOTE, TOY_UNITS, ToyFailure, toy_fails, toy_value
from .runtime import ToyRuntime

__all__ = [
    "MAX_TRANSFORMATIONS",
    "TOY_MODULE",
    "TOY_NOTE",
    "TOY_UNITS",
    "ToyFailure",
    "ToyProtocol",
    "ToyProtocolResult",
    "ToyRuntime",
    "ToySettings",
    "ToyUnit",
    "build_toy_network",
    "load_components",
    "toy_fails",
    "toy_value",
]

_GUFE_NAMES = ("ToyProtocol", "ToySettings", "ToyUnit", "ToyProtocolResult")


def __getattr__(name: str) -> Any:
    if name not in _GUFE_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if importlib.util.find_spec("gufe") is not None:
        from . import gufe_protocol

        value = getattr(gufe_protocol, name)
    elif name in ("ToyProtocol", "ToySettings"):
        from . import protocol

        value = getattr(protocol, name)
    else:
        raise AttributeError(f"{__name__}.{name} is a gufe class: it needs gufe installed (conda-forge)")
    globals()[name] = value  # resolve once
    return value
