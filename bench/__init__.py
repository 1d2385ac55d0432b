"""Benchmarks of alchemiscale-local against raw baselines measured in the same run.

Each benchmark module (``submit``, ``fetch``, ``claim``, ``idle_gap``, ``results``, ``up``,
``memory``) exposes ``run(ctx, quick) -> dict``: it measures the product path, measures a
raw baseline on the same machine and the same Neo4j, and returns one JSON-ready record
(see :func:`bench.common.record`). ``python -m bench.run_all`` runs them on a private
ephemeral deployment (jar Neo4j) and writes ``bench/results/<name>.json``.
"""

BENCHMARKS: tuple[str, ...] = ("memory", "submit", "fetch", "results", "idle-gap", "claim", "up")
