"""Strategies of a network, as alchemiscale 0.8's client has them (built on ``stratocaster``).

A strategy is any gufe ``Strategy`` (e.g. ``stratocaster.strategies.ConnectivityStrategy``); it
travels as its keyed chain. The deployment's strategist runs it (see
:mod:`alchemiscale_local.strategist`).
"""

from __future__ import annotations

from typing import Any

from alchemiscale_local.models import ScopedKey
from alchemiscale_local.wire import StrategyBody

from ._wire import wire_body
from .base import BaseClient, seg, sk_str, to_sk
from .documents import from_keyed_chain, to_keyed_chain

SK = ScopedKey | str


class StrategiesMixin(BaseClient):
    """``set_network_strategy`` and friends."""

    _as_gufe: bool

    def set_network_strategy(
        self,
        network: SK,
        strategy: Any | None,
        max_tasks_per_transformation: int = 3,
        task_scaling: str = "exponential",
        mode: str = "partial",
        sleep_interval: int = 3600,
    ) -> ScopedKey | None:
        """Set (``strategy=None``: remove) the network's Strategy; its ScopedKey (None if removed).

        ``task_scaling``: ``linear`` or ``exponential`` (weights to task counts); ``mode``:
        ``full`` (also cancels excess tasks), ``partial`` or ``disabled``; ``sleep_interval``:
        seconds between the strategy's iterations.
        """
        if strategy is None:
            body = wire_body(StrategyBody, strategy=None)
        else:
            body = wire_body(
                StrategyBody,
                strategy=to_keyed_chain(strategy),
                max_tasks_per_transformation=max_tasks_per_transformation,
                task_scaling=str(getattr(task_scaling, "value", task_scaling)),
                mode=str(getattr(mode, "value", mode)),
                sleep_interval=sleep_interval,
            )
        return to_sk(self._post(f"/networks/{seg(sk_str(network))}/strategy", body, idempotent=True))

    def get_network_strategy(self, network: SK) -> Any | None:
        """The network's Strategy (a gufe object with gufe installed, else its keyed chain), or None."""
        chain = self._get(f"/networks/{seg(sk_str(network))}/strategy")
        if chain is None:
            return None
        return from_keyed_chain(chain, self._as_gufe)

    def get_network_strategy_state(self, network: SK) -> Any | None:
        """The StrategyState (alchemiscale's model when installed, else its dict), or None."""
        state = self._get(f"/networks/{seg(sk_str(network))}/strategy/state")
        if state is None:
            return None
        try:
            from alchemiscale.storage.models import StrategyState
        except ImportError:
            return state
        return StrategyState.from_dict(state)

    def get_network_strategy_status(self, network: SK) -> str | None:
        """``awake``, ``dormant`` or ``error``; None without a strategy."""
        return self._get(f"/networks/{seg(sk_str(network))}/strategy/status")

    def set_network_strategy_awake(self, network: SK) -> ScopedKey | None:
        """Wake a dormant or errored strategy; the network's key (None without a strategy)."""
        return to_sk(self._post(f"/networks/{seg(sk_str(network))}/strategy/awake", {}))
