"""Helpers shared by the API suites (tests/integration/test_api_*.py): documents and results."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import zstandard
from statestore_helpers import GUFE_FIXTURES, fixture_path, fixture_text, toy_chain  # noqa: F401

from tests.pdr_pool import pdr_chain

API_NETWORK_FIXTURES = [
    "gufe-generated_alchemical_network.json",
    "rbfe-tyk2/rbfe-small.json",
    "rbfe-tyk2/rbfe-medium.json",
]


OPEN_ROUTES = {"/ping", "/token", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
ANY_KIND_ROUTES = {
    "/check",
    "/info",
    "/identities/{identifier}/scopes",
    "/tasks/{task}/transformation",  # alchemiscale's user and compute clients both call it
}


def alchemiscale_compute_routes() -> set[tuple[str, str]]:
    """(method, path) of alchemiscale's compute API, served at the root (compute tokens only)."""
    from alchemiscale_local.api import compat_compute, compat_managers, compat_taskhubs

    routers = (compat_compute.router, compat_taskhubs.router, compat_managers.router)
    return {(m, r.path) for router in routers for r in router.routes for m in r.methods}


def api_routes() -> list[tuple[str, str]]:
    """(method, path template) of every authenticated route, from a real app's OpenAPI schema."""
    from alchemiscale_local.api import create_app
    from tests.plugins.api_server import make_settings

    app = create_app(make_settings(Path(tempfile.mkdtemp(prefix="routes-"))))
    out = []
    for path, operations in app.openapi()["paths"].items():
        if path not in OPEN_ROUTES:
            out.extend((method.upper(), path) for method in operations)
    return sorted(out)


def entries(chain: Any) -> list[tuple[str, str]]:
    """A chain's entries as sorted (key, json.dumps(dict)) pairs: each dict's key order matters.

    The state store returns entries in its own dependencies-first order (Kahn, ties by key),
    not the submitter's order, so entries are compared sorted; see :func:`assert_dependencies_first`.
    """
    if isinstance(chain, (str, bytes)):
        chain = json.loads(chain)
    assert_dependencies_first(chain)
    return sorted((k, json.dumps(d)) for k, d in chain)


def assert_dependencies_first(chain: list) -> None:
    """Every reference names an earlier entry (gufe's loader needs this order)."""
    seen: set[str] = set()
    for key, d in chain:
        for ref in _refs(d):
            assert ref in seen, f"{key} references {ref} before it appears"
        seen.add(key)


def subchain(chain: list, key: str) -> list[list]:
    """The entries ``key`` depends on (transitively) plus itself, in the chain's order."""
    by_key = {k: d for k, d in chain}
    needed: set[str] = set()
    stack = [key]
    while stack:
        k = stack.pop()
        if k in needed:
            continue
        needed.add(k)
        stack.extend(_refs(by_key[k]))
    return [[k, d] for k, d in chain if k in needed]


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {":gufe-key:"}:
            return [value[":gufe-key:"]]
        return [r for v in value.values() for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def toy_network(
    n: int = 3,
    *,
    name: str | None = None,
    salt: str | None = None,
    protocols: tuple[str, ...] = ("ToyProtocolA",),
) -> list[list]:
    """A small network chain with fresh keys (unique ``salt`` unless given)."""
    salt = salt if salt is not None else uuid.uuid4().hex[:8]
    return toy_chain(n, name=name or f"net_{salt}", salt=salt, protocols=protocols)


def pdr_document(
    task: str, *, ok: bool = True, traceback: str | None = None, transformation_key: str | None = None
) -> tuple[str, list[list], bytes]:
    """A ProtocolDAGResult keyed chain made by real gufe: (its content-hash key, chain, zstd bytes).

    Fresh from gufe where it is installed, else an unused document of the gufe-made pool
    (tests/pdr_pool.py). A failed one carries one ProtocolUnitFailure, with ``traceback``
    when given. ``task`` is not part of the document (real results do not name the task).
    """
    chain = pdr_chain(ok, traceback)
    if transformation_key is not None:  # a result naming another transformation (refusal tests)
        chain[-1][1]["transformation_key"] = transformation_key
    return chain[-1][0], chain, zstandard.ZstdCompressor().compress(json.dumps(chain).encode())


def submit_toy(client: Any, scope: str, n: int = 3, **kwargs: Any) -> tuple[Any, list[list], list[Any]]:
    """Submit a toy network; return (network key, chain, transformation keys)."""
    chain = toy_network(n, **kwargs)
    net = client.create_network(chain, scope, visualize=False)
    return net, chain, client.get_network_transformations(net)


def run_task(compute: Any, service: str, task: Any, *, ok: bool = True, traceback: str | None = None) -> dict:
    """Push a result for a task the service has claimed."""
    pdr_key, _chain, data = pdr_document(str(task), ok=ok, traceback=traceback)
    return compute.push_result(task, service, pdr_key, ok, data)
