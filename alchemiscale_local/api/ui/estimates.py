"""ΔG ± σ per transformation where the server can compute it without gufe.

A runtime that is not the gufe fallback (the toy runtime, third-party runtimes) can gather
results from their keyed-chain JSON alone; for gufe protocols (openfe) the server has no gufe,
so the dashboard says so and shows result counts instead. Estimates are cached by the exact
set of result locations, so a page that polls reads each result once.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from alchemiscale_local.backends.statestore import dashboard as q

log = logging.getLogger(__name__)

NEEDS_GUFE = "ΔG needs gufe, which the server does not have; fetch it with the client"
CACHE_SIZE = 4096


class Estimates:
    """``get(store, objects, transformations)`` -> ``{tf: {estimate, uncertainty, units} | {note}}``."""

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Any, objects: Any, transformations: list[str]) -> dict[str, dict[str, Any]]:
        refs = q.ok_results(store, transformations)
        wanted = [tf for tf in transformations if refs.get(tf)]
        out: dict[str, dict[str, Any]] = {}
        missing: list[str] = []
        with self._lock:
            for tf in wanted:
                hit = self._cache.get(self._key(tf, refs[tf]))
                if hit is None:
                    missing.append(tf)
                else:
                    out[tf] = hit
        if missing:
            chains = q.transformation_protocol(store, missing)
            for tf in missing:
                value = self._gather(objects, chains.get(tf), refs[tf])
                out[tf] = value
                with self._lock:
                    self._cache[self._key(tf, refs[tf])] = value
                    while len(self._cache) > CACHE_SIZE:
                        self._cache.popitem(last=False)
        return out

    @staticmethod
    def _key(tf: str, refs: list[dict[str, Any]]) -> tuple:
        return (tf, *(r["location"] for r in refs))

    @staticmethod
    def _gather(objects: Any, chain: list | None, refs: list[dict[str, Any]]) -> dict[str, Any]:
        from alchemiscale_local.runtimes.base import protocol_of
        from alchemiscale_local.runtimes.registry import select_runtime

        if chain is None:
            return {"note": "the transformation has no protocol"}
        try:
            runtime = select_runtime(*protocol_of(chain))
        except Exception as exc:  # unknown protocol: say so, do not fail the page
            return {"note": str(exc)}
        if runtime.fallback:
            return {"note": NEEDS_GUFE}
        try:
            data = [objects.get_result(r["location"], r["sha256"]) for r in refs]
            got = runtime.gather(chain, data)
        except Exception as exc:  # a broken result must not take the page down
            log.warning("could not gather results of %s: %s", chain[-1][0], exc)
            return {"note": f"could not gather: {exc}"}
        est, unc = got.get("estimate"), got.get("uncertainty")
        return {
            "estimate": est,
            "uncertainty": unc,
            "units": got.get("units", ""),
            "toy": bool(got.get("toy")),
        }


def label(value: dict[str, Any] | None) -> str:
    """``-1.23 ± 0.10`` (or ``-1.23``), '' when there is no number."""
    if not value or value.get("estimate") is None:
        return ""
    text = f"{value['estimate']:.2f}"
    if value.get("uncertainty") is not None:
        text += f" ± {value['uncertainty']:.2f}"
    return text
