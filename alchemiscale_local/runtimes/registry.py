"""Find runtimes (entry point group ``alchemiscale_local.runtimes``) and pick one per protocol.

A protocol is matched by its ``__module__``: every non-fallback runtime that ``handles`` it is a
candidate (in entry-point name order), and only when none does is a fallback (gufe) chosen.
So a third-party runtime takes precedence over the gufe fallback for the modules it claims.
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points

from .base import Runtime, RuntimeNotAvailable, protocol_of

__all__ = [
    "ENTRY_POINT_GROUP",
    "available_runtimes",
    "load_runtimes",
    "runtime_for",
    "runtime_for_transformation",
    "select_runtime",
]

ENTRY_POINT_GROUP = "alchemiscale_local.runtimes"
log = logging.getLogger(__name__)
_lock = threading.Lock()
_cache: dict[str, Runtime] | None = None


def load_runtimes(*, refresh: bool = False) -> dict[str, Runtime]:
    """``{name: runtime instance}`` for every registered runtime, sorted by name.

    A runtime whose entry point fails to load is skipped with a warning, so one broken
    third-party package cannot stop the service. Cached; ``refresh=True`` rescans.
    """
    global _cache
    with _lock:
        if _cache is not None and not refresh:
            return dict(_cache)
        found: dict[str, Runtime] = {}
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in found:
                log.warning("runtime %r is registered twice; keeping %s", ep.name, type(found[ep.name]))
                continue
            try:
                obj = ep.load()
                runtime = obj() if isinstance(obj, type) else obj
            except Exception as exc:  # a broken plug-in must not take the others down
                log.warning("cannot load runtime %r (%s): %s: %s", ep.name, ep.value, type(exc).__name__, exc)
                continue
            if not isinstance(runtime, Runtime):
                log.warning("entry point %r (%s) is not a Runtime; ignored", ep.name, ep.value)
                continue
            found[ep.name] = runtime
        _cache = found
        return dict(found)


def available_runtimes() -> list[str]:
    """Names of the runtimes that can run here (gufe only where gufe is importable)."""
    return [name for name, rt in load_runtimes().items() if rt.available()]


def select_runtime(protocol_module: str, protocol_qualname: str) -> Runtime:
    """The runtime for this protocol class, whether or not it can run here."""
    runtimes = load_runtimes()
    for fallback in (False, True):
        for rt in runtimes.values():
            if rt.fallback == fallback and rt.handles(protocol_module, protocol_qualname):
                return rt
    raise RuntimeNotAvailable(
        f"no runtime handles the protocol {protocol_module}.{protocol_qualname} (registered: "
        f"{', '.join(runtimes) or 'none'}); runtimes are registered in the entry point group "
        f"{ENTRY_POINT_GROUP!r}"
    )


def runtime_for(protocol_module: str, protocol_qualname: str) -> Runtime:
    """The runtime for this protocol; :class:`RuntimeNotAvailable` says what to install if it
    cannot run here."""
    rt = select_runtime(protocol_module, protocol_qualname)
    problem = rt.availability_error(protocol_module, protocol_qualname)
    if problem is not None:
        raise RuntimeNotAvailable(problem)
    return rt


def runtime_for_transformation(transformation: list) -> Runtime:
    """:func:`runtime_for` the protocol that a Transformation keyed chain references."""
    return runtime_for(*protocol_of(transformation))
