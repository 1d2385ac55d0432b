"""User-client methods for networks, transformations, chemical systems and restart patterns."""

from __future__ import annotations

import json
from typing import Any

from alchemiscale_local.models import Scope, ScopedKey
from alchemiscale_local.wire import (
    MaxRetriesBody,
    NetworksBody,
    NetworkStatesBody,
    NetworkSubmission,
    NetworkWeightsBody,
    PatternsBody,
    RestartPatternsBody,
    WeightBody,
)

from . import display
from ._wire import wire_body
from .base import BaseClient, batched, seg, sk_str, to_sk
from .documents import from_keyed_chain, to_keyed_chain
from .errors import ValidationError

SK = ScopedKey | str


def _scope_str(scope: Scope | str | None) -> str | None:
    return str(scope) if scope is not None else None


def _check_transformations(chain: list) -> None:
    """alchemiscale's client-side check: no Transformation with stateA == stateB."""
    for key, d in chain:
        if isinstance(d, dict) and d.get("__qualname__") == "Transformation":
            a, b = d.get("stateA"), d.get("stateB")
            if a is not None and a == b:
                raise ValidationError(None, f"transformation {key} has the same stateA and stateB")


class NetworksMixin(BaseClient):
    """Networks, transformations, chemical systems, restart patterns."""

    _as_gufe: bool
    _cache_key: Any  # the user client's per-identity key for its disk cache

    def _document(self, route: str, key: SK, visualize: bool, what: str, compress: bool = True) -> Any:
        """A gufe document by key: from the disk cache (immutable: keys are content hashes) or the API."""
        cache = getattr(self, "_cache", None)
        cache_key = self._cache_key(sk_str(key)) if cache is not None else ""
        text = cache.get_text(cache_key) if cache is not None else None
        if text is None:
            headers = {} if compress else {"Accept-Encoding": "identity"}
            with display.spinner(f"retrieving {what} {key}", visualize):
                text = self._request("GET", f"/{route}/{seg(key)}", headers=headers).text
            if cache is not None:
                cache.add_text(cache_key, text)
        return from_keyed_chain(json.loads(text), self._as_gufe)

    # -- existence ------------------------------------------------------------------------
    def get_scoped_key(self, obj: Any, scope: Scope | str) -> ScopedKey:
        """The ScopedKey of a gufe object (or keyed dict with a key) in a specific scope; no server call.

        Deprecated in alchemiscale (kept for its scripts): prefer the keys the server returns,
        e.g. :meth:`get_network_transformations`.
        """
        import warnings

        warnings.warn(
            "`get_scoped_key` is deprecated; use the ScopedKeys the server returns",
            DeprecationWarning,
            stacklevel=2,
        )
        sc = scope if isinstance(scope, Scope) else Scope.from_str(scope)
        if not sc.specific():
            raise ValueError("Scope for a ScopedKey must be specific; it cannot contain wildcards.")
        key = getattr(obj, "key", None) or (obj.get(":gufe-key:") if isinstance(obj, dict) else None)
        if key is None:
            raise ValueError("obj has no gufe key")
        return ScopedKey(gufe_key=str(key), org=sc.org, campaign=sc.campaign, project=sc.project)

    def check_exists(self, scoped_key: SK) -> bool:
        """Whether the object or task exists in the state store."""
        return bool(self._get(f"/exists/{seg(scoped_key)}"))

    # -- networks -------------------------------------------------------------------------
    def create_network(
        self,
        network: Any,
        scope: Scope | str,
        state: str = "active",
        compress: bool | int = True,
        visualize: bool = True,
    ) -> ScopedKey:
        """Submit a network (gufe AlchemicalNetwork, keyed chain, JSON text or path) into a specific scope.

        Idempotent: submitting the same network again returns the same ScopedKey.
        """
        chain = to_keyed_chain(network)
        _check_transformations(chain)
        body = wire_body(
            NetworkSubmission, network=chain, scope=str(scope), state=str(getattr(state, "value", state))
        )
        with display.spinner(f"submitting network ({len(chain)} objects) to {scope}", visualize):
            out = self._post("/networks", body, compress=bool(compress))
        return ScopedKey.from_str(out["network"])

    def get_network(self, network: SK, compress: bool = True, visualize: bool = True) -> Any:
        """The network: a gufe AlchemicalNetwork, or its keyed chain without gufe."""
        return self._document("networks", network, visualize, "network", compress)

    def query_networks(
        self, name: str | None = None, scope: Scope | str | None = None, state: str | None = "active"
    ) -> list[ScopedKey]:
        """Networks whose name matches the regex ``name``, in ``scope``, in ``state`` (None: any)."""
        return self._keys("/networks", name=name, scope=_scope_str(scope), state=state or "")

    def set_networks_state(
        self, networks: list[SK], states: list[str], *, batch_size: int = 1000
    ) -> list[ScopedKey | None]:
        """Set each network's state (active, inactive, invalid, deleted); None for unknown networks."""
        if len(networks) != len(states):
            raise ValueError("networks and states must have the same length")
        out: list[ScopedKey | None] = []
        pairs = list(zip(networks, states, strict=False))
        for chunk in batched(pairs, batch_size):
            got = self._post(
                "/bulk/networks/state/set",
                wire_body(NetworkStatesBody, networks=[n for n, _ in chunk], states=[s for _, s in chunk]),
            )
            out.extend(to_sk(k) for k in got)
        return out

    def set_network_state(self, network: SK, state: str) -> ScopedKey | None:
        """Set one network's state; None if it is not found."""
        return self.set_networks_state([network], [state])[0]

    def get_networks_state(self, networks: list[SK], *, batch_size: int = 1000) -> list[str | None]:
        """Each network's state, None for unknown networks."""
        out: list[str | None] = []
        for chunk in batched(list(networks), batch_size):
            out.extend(self._post("/bulk/networks/state/get", wire_body(NetworksBody, networks=chunk)))
        return out

    def get_network_state(self, network: SK) -> str | None:
        return self.get_networks_state([network])[0]

    def get_network_weight(self, network: SK) -> float:
        """The network's TaskHub weight (0-1)."""
        return self._get(f"/networks/{seg(network)}/weight")

    def set_network_weight(self, network: SK, weight: float) -> ScopedKey | None:
        """Set the TaskHub weight in [0, 1]; 0 stops claims from the network without cancelling."""
        return to_sk(self._post(f"/networks/{seg(network)}/weight", wire_body(WeightBody, weight=weight)))

    def get_networks_weight(self, networks: list[SK], batch_size: int = 1000) -> list[float | None]:
        out: list[float | None] = []
        for chunk in batched(list(networks), batch_size):
            out.extend(self._post("/bulk/networks/weight/get", wire_body(NetworksBody, networks=chunk)))
        return out

    def set_networks_weight(
        self, networks: list[SK], weights: list[float], batch_size: int = 1000
    ) -> list[ScopedKey | None]:
        """Set each network's hub weight; the networks' keys in input order."""
        if len(networks) != len(weights):
            raise ValueError("networks and weights must have the same length")
        pairs = list(zip(networks, weights, strict=False))
        out: list[ScopedKey | None] = []
        for chunk in batched(pairs, batch_size):
            got = self._post(
                "/bulk/networks/weight/set",
                wire_body(NetworkWeightsBody, networks=[n for n, _ in chunk], weights=[w for _, w in chunk]),
            )
            out.extend(to_sk(k) for k in got)
        return out

    def get_network_transformations(self, network: SK) -> list[ScopedKey]:
        """Transformations and NonTransformations of a network (the authoritative keys)."""
        return self._keys(f"/networks/{seg(network)}/transformations")

    def get_network_chemicalsystems(self, network: SK) -> list[ScopedKey]:
        return self._keys(f"/networks/{seg(network)}/chemicalsystems")

    def get_transformation_networks(self, transformation: SK) -> list[ScopedKey]:
        return self._keys(f"/transformations/{seg(transformation)}/networks")

    def get_chemicalsystem_networks(self, chemicalsystem: SK) -> list[ScopedKey]:
        return self._keys(f"/chemicalsystems/{seg(chemicalsystem)}/networks")

    # -- transformations and chemical systems ---------------------------------------------
    def query_transformations(
        self, name: str | None = None, scope: Scope | str | None = None
    ) -> list[ScopedKey]:
        return self._keys("/transformations", name=name, scope=_scope_str(scope))

    def query_chemicalsystems(
        self, name: str | None = None, scope: Scope | str | None = None
    ) -> list[ScopedKey]:
        return self._keys("/chemicalsystems", name=name, scope=_scope_str(scope))

    def get_transformation(self, transformation: SK, compress: bool = True, visualize: bool = True) -> Any:
        """A gufe Transformation, or its keyed chain without gufe."""
        return self._document("transformations", transformation, visualize, "transformation", compress)

    def get_chemicalsystem(self, chemicalsystem: SK, compress: bool = True, visualize: bool = True) -> Any:
        """A gufe ChemicalSystem, or its keyed chain without gufe."""
        return self._document("chemicalsystems", chemicalsystem, visualize, "chemical system", compress)

    def get_transformation_chemicalsystems(self, transformation: SK) -> list[ScopedKey]:
        return self._keys(f"/transformations/{seg(transformation)}/chemicalsystems")

    def get_chemicalsystem_transformations(self, chemicalsystem: SK) -> list[ScopedKey]:
        return self._keys(f"/chemicalsystems/{seg(chemicalsystem)}/transformations")

    # -- restart patterns -------------------------------------------------------------------
    def add_task_restart_patterns(
        self, network_scoped_key: SK, patterns: list[str], num_allowed_restarts: int
    ) -> ScopedKey:
        """Restart errored tasks of the network whose tracebacks match a pattern (regex)."""
        self._post(
            f"/networks/{seg(network_scoped_key)}/restartpatterns/add",
            wire_body(
                RestartPatternsBody, patterns=list(patterns), num_allowed_restarts=num_allowed_restarts
            ),
        )
        return ScopedKey.coerce(network_scoped_key)

    def get_task_restart_patterns(self, network_scoped_key: SK) -> dict[str, int]:
        """``{pattern: allowed restarts}`` of the network."""
        key = sk_str(network_scoped_key)
        got = self._post("/bulk/networks/restartpatterns/get", wire_body(NetworksBody, networks=[key]))
        return {pattern: n for pattern, n in got[key]}

    def set_task_restart_patterns_allowed_restarts(
        self, network_scoped_key: SK, patterns: list[str], num_allowed_restarts: int
    ) -> None:
        self._post(
            f"/networks/{seg(network_scoped_key)}/restartpatterns/maxretries",
            wire_body(MaxRetriesBody, patterns=list(patterns), max_retries=num_allowed_restarts),
        )

    def remove_task_restart_patterns(self, network_scoped_key: SK, patterns: list[str]) -> None:
        self._post(
            f"/networks/{seg(network_scoped_key)}/restartpatterns/remove",
            wire_body(PatternsBody, patterns=list(patterns)),
        )

    def clear_task_restart_patterns(self, network_scoped_key: SK) -> None:
        self._post(f"/networks/{seg(network_scoped_key)}/restartpatterns/clear")
