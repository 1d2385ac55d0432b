"""User-client methods for results and failures: refs, verified bytes, gathered estimates."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Literal

from alchemiscale_local.keyedchain import parse_chain
from alchemiscale_local.models import ScopedKey

from . import display
from .base import BaseClient, seg, sk_str
from .documents import decode_result, from_keyed_chain, gufe_available, protocol_of, verify_sha256
from .errors import CorruptResult, ResultIntegrityError

SK = ScopedKey | str
#: parsed network chains kept by a client (a 2,000-transformation network is a few MB)
NETWORK_CACHE_SIZE = 8
ResultFormat = Literal["ProtocolResult", "ProtocolResults", "ProtocolDAGResults", "refs"]
FailureFormat = Literal["ProtocolDAGResults", "refs"]


def gather_results(transformation: list, results: list[bytes]) -> Any:
    """Gather successful result documents into an estimate.

    Uses the runtime registry (``alchemiscale_local.runtimes.registry.runtime_for``) for the
    protocol named in the transformation chain; without it, gufe's ``Transformation.gather``.
    """
    module, qualname = protocol_of(transformation)
    try:
        from alchemiscale_local.runtimes.registry import runtime_for
    except ImportError:
        runtime_for = None
    if runtime_for is not None:
        try:
            return runtime_for(module, qualname).gather(transformation, list(results))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # a stored object that is not a PDR
            raise CorruptResult(None, f"a stored result does not decode as keyed-chain JSON: {exc}") from None
    if gufe_available():
        tf = from_keyed_chain(transformation, True)
        pdrs = [from_keyed_chain(decode_result(r), True) for r in results]
        return tf.gather(pdrs)
    raise RuntimeError(f"no runtime can gather results of {module}.{qualname}: install gufe or its runtime")


class ResultsMixin(BaseClient):
    """Results and failures."""

    _as_gufe: bool

    def _refs(self, path: str) -> list[dict[str, Any]]:
        return self._get(path)

    def _fetch(self, transformation: str, ref: dict[str, Any], kind: str) -> bytes:
        resp = self._request(
            "GET",
            f"/transformations/{transformation}/{kind}/{ref['pdr_key']}",
            headers={"Accept-Encoding": "identity"},
        )
        data = resp.content
        header = resp.headers.get("X-Content-SHA256")
        expected = ref.get("sha256") or header
        if header and expected and header.lower() != expected.lower():
            raise ResultIntegrityError(
                resp.status_code,
                f"result {ref['pdr_key']}: server checksum {header} differs from the reference {expected}",
            )
        verify_sha256(data, expected, what=f"result {ref['pdr_key']}")
        return data

    def _fetch_all(
        self, transformation: str, refs: list[dict[str, Any]], kind: str, visualize: bool
    ) -> list[bytes]:
        with display.progress(f"fetching {len(refs)} {kind}", len(refs), visualize) as advance:
            return self._map(lambda r: self._fetch(transformation, r, kind), refs, progress=advance)

    def _shape(self, transformation: str, refs: list[dict], datas: list[bytes], return_as: str) -> Any:
        if return_as == "ProtocolDAGResults":
            return [from_keyed_chain(decode_result(d), self._as_gufe) for d in datas]
        chain = json.loads(self._request("GET", f"/transformations/{transformation}").text)
        if return_as == "ProtocolResults":
            return [gather_results(chain, [d]) for d in datas]
        return gather_results(chain, datas) if datas else None

    def get_transformation_results(
        self, transformation: SK, return_as: ResultFormat = "ProtocolResult", *, visualize: bool = True
    ) -> Any:
        """Successful results of a transformation.

        ``'ProtocolResult'``: one gathered estimate (None without results); ``'ProtocolResults'``:
        one per result; ``'ProtocolDAGResults'``: the result documents (gufe objects, or keyed
        chains without gufe); ``'refs'``: references (location, sha256, size, task ...) only.
        Every downloaded document is checked against its recorded sha256.
        """
        if return_as not in ("ProtocolResult", "ProtocolResults", "ProtocolDAGResults", "refs"):
            raise ValueError(f"unknown return_as {return_as!r}")
        tf = seg(transformation)
        refs = self._refs(f"/transformations/{tf}/results")
        if return_as == "refs":
            return refs
        return self._shape(tf, refs, self._fetch_all(tf, refs, "results", visualize), return_as)

    def get_transformation_failures(
        self, transformation: SK, return_as: FailureFormat = "ProtocolDAGResults", *, visualize: bool = True
    ) -> list[Any]:
        """Failed results of a transformation (documents, or ``'refs'`` with tracebacks)."""
        tf = seg(transformation)
        refs = self._refs(f"/transformations/{tf}/failures")
        if return_as == "refs":
            return refs
        datas = self._fetch_all(tf, refs, "failures", visualize)
        return [from_keyed_chain(decode_result(d), self._as_gufe) for d in datas]

    def _download(self, refs: list[dict[str, Any]], visualize: bool, batch: int = 500) -> list[bytes]:
        """Many results in few requests (bundles), each checked against its recorded sha256."""
        out: list[bytes] = []
        with display.progress(f"fetching {len(refs)} results", len(refs), visualize) as advance:
            for start in range(0, len(refs), batch):
                chunk = refs[start : start + batch]
                resp = self._request(
                    "POST",
                    "/bulk/results/download",
                    json_body={"locations": [r["location"] for r in chunk]},
                    headers={"Accept-Encoding": "identity"},
                )
                body = resp.content
                newline = body.index(b"\n")
                header = json.loads(body[:newline])
                offset = newline + 1
                for ref, entry in zip(chunk, header, strict=False):
                    data = body[offset : offset + entry["size"]]
                    offset += entry["size"]
                    verify_sha256(data, ref["sha256"], what=f"result at {ref['location']}")
                    out.append(data)
                    advance(1)
        return out

    def _network_results(
        self, network: SK, ok: bool, return_as: str, visualize: bool
    ) -> dict[ScopedKey, Any]:
        net = sk_str(network)
        tfs = self._get(f"/networks/{seg(net)}/transformations")
        refs: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(tfs), 1000):
            refs.update(
                self._post(
                    "/bulk/transformations/results", {"transformations": tfs[start : start + 1000], "ok": ok}
                )
            )
        if return_as == "refs":
            return {ScopedKey.from_str(tf): refs[tf] for tf in tfs}
        flat = [r for tf in tfs for r in refs[tf]]
        datas = iter(self._download(flat, visualize))
        per_tf = {tf: [next(datas) for _ in refs[tf]] for tf in tfs}
        if return_as == "ProtocolDAGResults":
            return {
                ScopedKey.from_str(tf): [
                    from_keyed_chain(decode_result(d), self._as_gufe) for d in per_tf[tf]
                ]
                for tf in tfs
            }
        # Gather each transformation from its subchain of the network (one download, not one per edge).
        chain = self._network_chain(net)
        out: dict[ScopedKey, Any] = {}
        for tf in tfs:
            sub = [list(e) for e in chain.subchain(tf.rsplit("-", 3)[0])]
            if return_as == "ProtocolResults":
                out[ScopedKey.from_str(tf)] = [gather_results(sub, [d]) for d in per_tf[tf]]
            else:
                out[ScopedKey.from_str(tf)] = gather_results(sub, per_tf[tf]) if per_tf[tf] else None
        return out

    def _network_chain(self, network: str) -> Any:
        """The network's parsed keyed chain, cached: a ScopedKey names immutable content."""
        cache: OrderedDict[str, Any] = self.__dict__.setdefault("_chain_cache", OrderedDict())
        if network in cache:
            cache.move_to_end(network)
            return cache[network]
        chain = parse_chain(self._request("GET", f"/networks/{seg(network)}").text)
        cache[network] = chain
        while len(cache) > NETWORK_CACHE_SIZE:
            cache.popitem(last=False)
        return chain

    def get_network_results(
        self, network: SK, return_as: ResultFormat = "ProtocolResult", *, visualize: bool = True
    ) -> dict[ScopedKey, Any]:
        """``{transformation: result}`` over the network, as ``get_transformation_results`` shapes it.

        Bulk: one request for every reference, results downloaded in bundles, and each
        transformation gathered from its part of the network's chain.
        """
        if return_as not in ("ProtocolResult", "ProtocolResults", "ProtocolDAGResults", "refs"):
            raise ValueError(f"unknown return_as {return_as!r}")
        return self._network_results(network, True, return_as, visualize)

    def get_network_failures(
        self, network: SK, return_as: FailureFormat = "ProtocolDAGResults", *, visualize: bool = True
    ) -> dict[ScopedKey, list[Any]]:
        """``{transformation: [failed result documents]}`` (or their ``'refs'``, with tracebacks)."""
        if return_as not in ("ProtocolDAGResults", "refs"):
            raise ValueError(f"unknown return_as {return_as!r}")
        return self._network_results(network, False, return_as, visualize)

    def _task_docs(self, task: SK, kind: str, return_as: str, visualize: bool) -> list[Any]:
        refs = self._refs(f"/tasks/{seg(task)}/{kind}")
        if return_as == "refs":
            return refs
        if return_as != "ProtocolDAGResults":
            raise ValueError("return_as must be 'ProtocolDAGResults' or 'refs'")
        tf = self._get(f"/tasks/{seg(task)}/transformation")
        datas = self._fetch_all(tf, refs, kind, visualize)
        return [from_keyed_chain(decode_result(d), self._as_gufe) for d in datas]

    def get_task_results(
        self, task: SK, return_as: FailureFormat = "ProtocolDAGResults", *, visualize: bool = True
    ) -> list[Any]:
        """Successful result documents of one task (or their ``'refs'``)."""
        return self._task_docs(task, "results", return_as, visualize)

    def get_task_failures(
        self, task: SK, return_as: FailureFormat = "ProtocolDAGResults", *, visualize: bool = True
    ) -> list[Any]:
        """Failed result documents of one task (or their ``'refs'``, with tracebacks)."""
        return self._task_docs(task, "failures", return_as, visualize)
