"""``get_network_archive(s)``: a network with all its successful results, as a gufe AlchemicalArchive.

As alchemiscale 0.8's: needs gufe (``gufe.archival``); None for a network that does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from alchemiscale_local.models import ScopedKey

from ._results import ResultFormat
from .base import BaseClient

SK = ScopedKey | str


class ArchivesMixin(BaseClient):
    """Archival extracts of networks."""

    def get_network_archives(
        self,
        networks: list[SK],
        metadata: list[dict | None] | None = None,
        compress: bool = True,
        visualize: bool = True,
    ) -> list[Any]:
        """One ``AlchemicalArchive`` per network (None where a network is not found), in input order."""
        keys = [ScopedKey.coerce(n) for n in networks]
        if len(set(keys)) != len(keys):
            raise ValueError("`networks` list must not contain duplicate entries")
        if metadata is None:
            metadata = [None] * len(keys)
        elif isinstance(metadata, Mapping) or not isinstance(metadata, Sequence):
            raise ValueError("`metadata` must be a list/sequence of dictionaries or None")
        if len(metadata) != len(keys):
            raise ValueError("`metadata` and `networks` lists must be the same length")
        from gufe.tokenization import JSON_HANDLER

        for key, meta in zip(keys, metadata, strict=True):
            if meta is None:
                continue
            if not isinstance(meta, Mapping):
                raise ValueError(f"Metadata for '{key}' must be a dictionary/mapping or None")
            try:
                json.dumps(meta, cls=JSON_HANDLER.encoder)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Unable to serialize metadata for '{key}': {exc}") from None
        return [self._network_archive(k, m, compress, visualize) for k, m in zip(keys, metadata, strict=True)]

    def get_network_archive(
        self, network: SK, metadata: dict | None = None, compress: bool = True, visualize: bool = True
    ) -> Any:
        """The network and all successful ProtocolDAGResults of its transformations (None if not found)."""
        return self.get_network_archives(
            [network],
            metadata=None if metadata is None else [metadata],
            compress=compress,
            visualize=visualize,
        )[0]

    def _network_archive(
        self, network: ScopedKey, metadata: dict | None, compress: bool, visualize: bool
    ) -> Any:
        from gufe.archival import AlchemicalArchive

        if not self.check_exists(network):  # type: ignore[attr-defined]
            return None
        net = self.get_network(network, compress=compress, visualize=visualize)  # type: ignore[attr-defined]
        results = self.get_network_results(  # type: ignore[attr-defined]
            network, return_as=ResultFormat.PROTOCOL_DAG_RESULTS, visualize=visualize
        )
        pairs = [
            (self.get_transformation(tf, compress=compress, visualize=False), pdrs)  # type: ignore[attr-defined]
            for tf, pdrs in results.items()
        ]
        return AlchemicalArchive(net, pairs, metadata=metadata)
