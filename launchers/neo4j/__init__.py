"""Neo4j launchers: ``jar`` (embedded JVM), ``docker`` (container), ``external`` (a Bolt URI).

``get_launcher(settings)`` picks one; ``launcher.start()`` returns a
:class:`Neo4jConnection`. Heavy imports (docker SDK, neo4j driver) happen lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Neo4jConnection, Neo4jLauncher, Neo4jLauncherError, Neo4jStartError

if TYPE_CHECKING:  # pragma: no cover
    from .auto import get_launcher

__all__ = [
    "Neo4jConnection",
    "Neo4jLauncher",
    "Neo4jLauncherError",
    "Neo4jStartError",
    "get_launcher",
]


def __getattr__(name: str) -> Any:
    if name == "get_launcher":
        from .auto import get_launcher

        return get_launcher
    raise AttributeError(name)
