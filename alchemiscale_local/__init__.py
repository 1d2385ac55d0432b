"""alchemiscale-local: a single-host alchemiscale-style deployment.

As alchemiscale's: ``from alchemiscale_local import AlchemiscaleClient, Scope, ScopedKey``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["AlchemiscaleClient", "AlchemiscaleLocalClient", "Scope", "ScopedKey", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import alchemiscale_local` (the server reads __version__) pulls in no client.
    if name in ("Scope", "ScopedKey"):
        from alchemiscale_local import models

        return getattr(models, name)
    if name in ("AlchemiscaleClient", "AlchemiscaleLocalClient"):
        from alchemiscale_local import client

        return getattr(client, name)
    raise AttributeError(f"module 'alchemiscale_local' has no attribute {name!r}")
