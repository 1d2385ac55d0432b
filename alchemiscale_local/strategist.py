"""The strategist: runs each network's Strategy inside the deployment (alchemiscale 0.8's loop).

A thread in the API process (:func:`start_strategist`, started by the app's lifespan when gufe
and stratocaster are installed) polls for strategies that are due, loads the network, its
results (as gufe ProtocolResults) and the strategy, asks it to ``propose``, turns the weights
into task counts as alchemiscale does (``linear``: ``1 + w*max``; ``exponential``:
``(1+max)**w``, capped at ``max_tasks_per_transformation``), creates and actions tasks to reach
them (``full`` mode also cancels excess ones) and sleeps ``sleep_interval`` seconds. When every
weight is None the strategy goes ``dormant`` until new results arrive; an exception puts it in
``error`` until ``set_network_strategy_awake``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from alchemiscale_local.backends.statestore import strategies as st
from alchemiscale_local.backends.statestore.base import parse_sk
from alchemiscale_local.models import ScopedKey

log = logging.getLogger(__name__)

POLL_S = 2.0
RUNNABLE = ("waiting", "running")


def _sks(keys: list[str]) -> list[ScopedKey]:
    """Keys the store read from the graph, parsed to pass back in."""
    return [parse_sk(k) for k in keys]


def available() -> bool:
    """gufe and stratocaster are importable (the strategist can load strategies)."""
    return all(importlib.util.find_spec(m) is not None for m in ("gufe", "stratocaster"))


def task_count(weight: float | None, max_tasks: int, scaling: str) -> int:
    """alchemiscale's weight → task count."""
    if weight is None or weight == 0:
        return 0
    if weight == 1:
        return max_tasks
    n = int(1 + weight * max_tasks) if scaling == "linear" else int((1 + max_tasks) ** weight)
    return min(n, max_tasks)


class Strategist:
    """One pass over the due strategies per :meth:`run_once`."""

    def __init__(self, store: Any, objects: Any) -> None:
        self.store = store
        self.objects = objects

    def run_once(self) -> int:
        """Run every due strategy once; how many ran."""
        due = st.strategies_due(self.store)
        for item in due:
            # the network key is read from the strategy's node: parsed once here
            self.execute(parse_sk(item["network"]), item["chain"], item["state"])
        return len(due)

    def _load(self, chain_json: str) -> Any:
        from gufe.tokenization import JSON_HANDLER, GufeTokenizable

        # gufe's custom encodings (settings, units) decode only with its JSON handler.
        return GufeTokenizable.from_keyed_chain(json.loads(chain_json, cls=JSON_HANDLER.decoder))

    def _protocol_results(self, network: Any, tf_sks: list[ScopedKey]) -> tuple[dict, int, dict]:
        """({transformation key: ProtocolResult or None}, successful result count, {key: sk})."""
        from gufe.tokenization import GufeTokenizable

        from alchemiscale_local.client.documents import decode_result

        by_key = {tf.key: tf for tf in network.edges}
        key_to_sk = {sk.gufe_key: sk for sk in tf_sks}
        results, count = {}, 0
        for key, sk in key_to_sk.items():
            refs = self.store.get_transformation_results(sk, ok=True)
            count += len(refs)
            pdrs = []
            for ref in refs:
                with self.objects.open_result(ref["location"], ref["sha256"]) as fh:
                    pdrs.append(GufeTokenizable.from_keyed_chain(decode_result(fh.read())))
            results[key] = by_key[key].gather(pdrs) if pdrs else None
        return results, count, key_to_sk

    def execute(self, network: ScopedKey, chain: str, state: dict[str, Any]) -> str:
        """One iteration on one network; its new status."""
        count = state.get("last_iteration_result_count") or 0
        try:
            net = self._load(self.store.get_keyed_chain_json(network))
            tf_sks = _sks(self.store.get_network_transformations(network))
            results, count, key_to_sk = self._protocol_results(net, tf_sks)
            if state["status"] == "dormant" and count == state["last_iteration_result_count"]:
                return "dormant"  # no new results: stay asleep without counting an iteration
            weights = self._load(chain).propose(net, results).resolve()
            if all(w is None for w in weights.values()):
                if state["mode"] == "full":
                    actioned = _sks(list(self.store.get_network_actioned_tasks(network)))
                    if actioned:
                        self.store.cancel_tasks(actioned, network)
                st.record_iteration(self.store, network, status="dormant", result_count=count)
                return "dormant"
            for key, sk in key_to_sk.items():
                if self.store.get_transformation_status(sk).get("error"):
                    weights[key] = None
            self._apply(network, key_to_sk, weights, state)
            st.record_iteration(self.store, network, status="awake", result_count=count)
            return "awake"
        except Exception as exc:  # any fault of a user's strategy is recorded on it, not raised
            log.exception("strategy of %s failed", network)
            st.record_iteration(
                self.store,
                network,
                status="error",
                result_count=count,
                exception=(type(exc).__qualname__, str(exc)),
                traceback=traceback.format_exc(),
            )
            return "error"

    def _apply(
        self, network: ScopedKey, key_to_sk: dict[str, ScopedKey], weights: dict, state: dict[str, Any]
    ) -> None:
        actioned = _sks(list(self.store.get_network_actioned_tasks(network)))
        infos = self.store.get_tasks(actioned) if actioned else []
        per_tf: dict[str, list[ScopedKey]] = {}
        for task, info in zip(actioned, infos, strict=True):
            if info is not None:
                per_tf.setdefault(info["transformation"], []).append(task)
        for key, weight in weights.items():
            sk = key_to_sk.get(str(key))
            if sk is None:
                continue
            target = task_count(weight, state["max_tasks_per_transformation"], state["task_scaling"])
            have = per_tf.get(str(sk), [])
            if target > len(have):
                need = target - len(have)
                spare = [
                    t
                    for t in _sks(self.store.get_transformation_tasks(sk))
                    if t not in have and self.store.get_task_status([t])[0] in RUNNABLE
                ][:need]
                spare += _sks(self.store.create_tasks([sk] * (need - len(spare)), creator="strategist"))
                self.store.action_tasks(spare, network)
            elif target < len(have) and state["mode"] == "full":
                statuses = dict(zip(have, self.store.get_task_status(have), strict=True))
                ordered = sorted(have, key=lambda t: statuses[t] != "waiting")  # waiting ones first
                self.store.cancel_tasks(ordered[: len(have) - target], network)


def start_strategist(
    store: Any, objects: Any, poll_s: float = POLL_S, active: Callable[[], bool] = lambda: True
) -> threading.Event | None:
    """Start the strategist thread when gufe and stratocaster are installed; set the returned
    event to stop it (None: not started). It works only while ``active()`` (this API worker
    holds the background lease), so one strategist runs per deployment."""
    if not available():
        log.info("strategist not started: gufe and stratocaster are not installed")
        return None
    stop = threading.Event()
    strategist = Strategist(store, objects)

    def loop() -> None:
        while not stop.is_set():
            try:
                if active():
                    strategist.run_once()
            except Exception:  # the store may be down for a while; keep polling
                log.exception("strategist pass failed")
            stop.wait(poll_s)

    threading.Thread(target=loop, name="strategist", daemon=True).start()
    return stop
