"""The TOY runtime: a protocol for smoke tests and examples. Its numbers are not chemistry.

Documents name this package as the ``__module__`` of :class:`ToyProtocol` and :class:`ToySettings`.
"""

from .network import MAX_TRANSFORMATIONS, build_toy_network, load_components
from .protocol import TOY_NOTE, TOY_UNITS, ToyProtocol, ToySettings, toy_fails, toy_value
from .runtime import ToyRuntime

__all__ = [
    "MAX_TRANSFORMATIONS",
    "TOY_NOTE",
    "TOY_UNITS",
    "ToyProtocol",
    "ToyRuntime",
    "ToySettings",
    "build_toy_network",
    "load_components",
    "toy_fails",
    "toy_value",
]
