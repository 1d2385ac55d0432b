"""A network's Strategy (as its keyed chain, no gufe needed) and its StrategyState.

One ``(:NetworkStrategy {network})`` node per network holds the chain text and the state fields
of alchemiscale 0.8's ``StrategyState``; the strategist loop reads and updates it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from alchemiscale_local.models import ScopedKey

from .base import key_of
from .errors import InvalidInput, NotFound

MODES = ("full", "partial", "disabled")
STATUSES = ("awake", "dormant", "error")
SCALINGS = ("linear", "exponential")
STATE_FIELDS = (
    "mode",
    "status",
    "iterations",
    "sleep_interval",
    "last_iteration",
    "last_iteration_result_count",
    "max_tasks_per_transformation",
    "task_scaling",
    "exception",
    "traceback",
)


def _check_chain(chain: Any) -> str:
    """The root key of a keyed chain ``[[key, dict], ...]`` (root last)."""
    if not isinstance(chain, list) or not chain:
        raise InvalidInput("strategy must be a non-empty keyed chain [[key, dict], ...]")
    for i, entry in enumerate(chain):
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], dict)
        ):
            raise InvalidInput(f"entry {i} of the strategy keyed chain is not a [key, dict] pair")
    return chain[-1][0]


def check_state(state: dict[str, Any]) -> dict[str, Any]:
    """Validate the settable StrategyState fields; the normalized values."""
    out = {
        "mode": state.get("mode", "partial"),
        "max_tasks_per_transformation": state.get("max_tasks_per_transformation", 3),
        "task_scaling": state.get("task_scaling", "exponential"),
        "sleep_interval": state.get("sleep_interval", 3600),
    }
    if out["mode"] not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, not {out['mode']!r}")
    if out["task_scaling"] not in SCALINGS:
        raise InvalidInput(f"task_scaling must be one of {', '.join(SCALINGS)}, not {out['task_scaling']!r}")
    for name in ("max_tasks_per_transformation", "sleep_interval"):
        value = out[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInput(f"{name} must be a positive integer, not {value!r}")
    unknown = set(state) - set(STATE_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown strategy state fields: {', '.join(sorted(unknown))}")
    return out


def set_network_strategy(
    store: Any, network: ScopedKey, chain: list | None, state: dict[str, Any]
) -> str | None:
    """Set (or with ``chain`` None remove) a network's strategy; the strategy's ScopedKey."""
    network = key_of(network, "AlchemicalNetwork")
    if not store.object_exists(network):
        raise NotFound(f"no network {network}")
    if chain is None:
        store._write("MATCH (s:NetworkStrategy {network: $n}) DETACH DELETE s", n=str(network))
        return None
    key = _check_chain(chain)
    values = check_state(state)
    sk = f"{key}-{network.scope}"
    store._write(
        "MERGE (s:NetworkStrategy {network: $n}) "
        "SET s += $v, s.strategy = $sk, s.chain = $chain, s.status = 'awake', s.iterations = 0, "
        "s.last_iteration = null, s.last_iteration_result_count = 0, s.exception = null, s.traceback = null",
        n=str(network),
        v=values,
        sk=sk,
        chain=json.dumps(chain),
    )
    return sk


def get_network_strategy_chain(store: Any, network: ScopedKey) -> str | None:
    """The strategy's keyed chain as JSON text, or None."""
    rows = store._read("MATCH (s:NetworkStrategy {network: $n}) RETURN s.chain AS c", n=str(network))
    return rows[0]["c"] if rows else None


def _state(row: dict[str, Any]) -> dict[str, Any]:
    state = {f: row.get(f) for f in STATE_FIELDS}
    if state["last_iteration"] is not None:
        state["last_iteration"] = time.strftime(
            "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(state["last_iteration"])
        )
    if state["exception"] is not None:
        state["exception"] = list(state["exception"])
    return state


def get_network_strategy_state(store: Any, network: ScopedKey) -> dict[str, Any] | None:
    """alchemiscale's ``StrategyState.to_dict()`` of the network's strategy, or None."""
    rows = store._read("MATCH (s:NetworkStrategy {network: $n}) RETURN properties(s) AS p", n=str(network))
    return _state(rows[0]["p"]) if rows else None


def set_network_strategy_awake(store: Any, network: ScopedKey) -> str | None:
    """Wake a dormant or errored strategy (clears its error); the network key, or None."""
    rows = store._write(
        "MATCH (s:NetworkStrategy {network: $n}) SET s.status = 'awake', s.exception = null, "
        "s.traceback = null RETURN s.network AS n",
        n=str(network),
    )
    return rows[0]["n"] if rows else None


def strategies_due(store: Any, now: float | None = None) -> list[dict[str, Any]]:
    """Strategies the strategist should run now: not disabled, not errored, and their
    sleep_interval past since the last iteration. Each: network, chain and state."""
    now = time.time() if now is None else now
    rows = store._read(
        "MATCH (s:NetworkStrategy) WHERE s.mode <> 'disabled' AND s.status <> 'error' "
        "AND (s.last_iteration IS NULL OR s.last_iteration + s.sleep_interval <= $now) "
        "RETURN s.network AS network, s.chain AS chain, properties(s) AS p",
        now=now,
    )
    return [{"network": r["network"], "chain": r["chain"], "state": _state(r["p"])} for r in rows]


def record_iteration(
    store: Any,
    network: ScopedKey,
    *,
    status: str,
    result_count: int,
    exception: tuple[str, str] | None = None,
    traceback: str | None = None,
) -> None:
    """Record one strategist iteration on the network's strategy."""
    store._write(
        "MATCH (s:NetworkStrategy {network: $n}) SET s.status = $st, s.iterations = s.iterations + 1, "
        "s.last_iteration = $now, s.last_iteration_result_count = $rc, s.exception = $exc, s.traceback = $tb",
        n=str(network),
        st=status,
        now=time.time(),
        rc=result_count,
        exc=list(exception) if exception else None,
        tb=traceback,
    )
