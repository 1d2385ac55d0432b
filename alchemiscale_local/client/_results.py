"""User-client methods for results and failures: refs, verified bytes, gathered results.

With gufe (``return_gufe``), results come back as alchemiscale 0.8 gives them: the protocol's own
``ProtocolResult`` (``Transformation.gather`` over the successful ProtocolDAGResults), a list of
them, or the ProtocolDAGResults. Without gufe, the runtime registry gathers a plain dict
(``{"estimate", "uncertainty", "units", "n_results", ...}``) and documents stay keyed chains.
"""

from __future__ import annotations

import json
import warnings
from collections import OrderedDict
from enum import StrEnum
from typing import Any, Literal

from alchemiscale_local.keyedchain import parse_chain
from alchemiscale_local.models import ScopedKey
from alchemiscale_local.wire import REFS_MEDIA_TYPE, ZSTD_MEDIA_TYPE, BulkResultsBody, LocationsBody

from . import display
from ._wire import wire_body
from .base import BaseClient, seg, sk_str
from .documents import decode_result, from_keyed_chain, protocol_of, verify_sha256
from .errors import CorruptResult, ResultIntegrityError

SK = ScopedKey | str
#: parsed network chains kept by a client (a 2,000-transformation network is a few MB)
NETWORK_CACHE_SIZE = 8


class ResultFormat(StrEnum):
    """What ``get_transformation_results`` / ``get_network_results`` return (alchemiscale 0.8's enum).

    ``REFS`` is this project's addition: the references (location, sha256, size, task) only.
    """

    PROTOCOL_RESULT = "ProtocolResult"
    PROTOCOL_RESULTS = "ProtocolResults"
    PROTOCOL_DAG_RESULTS = "ProtocolDAGResults"
    REFS = "refs"


ResultFormatLike = ResultFormat | Literal["ProtocolResult", "ProtocolResults", "ProtocolDAGResults", "refs"]
FailureFormat = Literal["ProtocolDAGResults", "refs"]


def _result_format(return_as: Any, return_protocoldagresults: bool | None) -> ResultFormat:
    if return_protocoldagresults is not None:
        warnings.warn(
            "'return_protocoldagresults' is deprecated (as in alchemiscale); use return_as='ProtocolDAGResults'",
            DeprecationWarning,
            stacklevel=3,
        )
        if return_protocoldagresults:
            return ResultFormat.PROTOCOL_DAG_RESULTS
    try:
        return ResultFormat(return_as)
    except ValueError:
        raise ValueError(
            f"unknown return_as {return_as!r}; one of {', '.join(repr(f.value) for f in ResultFormat)}"
        ) from None


def gather_results(transformation: list, results: list[bytes]) -> dict[str, Any]:
    """Gather successful result documents into a plain estimate dict, without gufe.

    Uses the runtime registry (``runtime_for``) for the protocol the transformation chain names.
    """
    from alchemiscale_local.runtimes.registry import runtime_for

    try:
        return runtime_for(*protocol_of(transformation)).gather(transformation, list(results))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # a stored object that is not a PDR
        raise CorruptResult(None, f"a stored result does not decode as keyed-chain JSON: {exc}") from None


def gather_gufe(transformation: Any, pdrs: list[Any], return_as: ResultFormat) -> Any:
    """alchemiscale's shapes from a gufe Transformation and its successful gufe ProtocolDAGResults."""
    if return_as is ResultFormat.PROTOCOL_RESULTS:
        return [transformation.gather([p]) for p in pdrs]
    return transformation.gather(pdrs) if pdrs else None


class ResultsMixin(BaseClient):
    """Results and failures."""

    _as_gufe: bool

    def _refs(self, path: str) -> list[dict[str, Any]]:
        # reference objects (size, sha256, tracebacks); without this Accept the API answers
        # alchemiscale's list of ProtocolDAGResultRef keys
        return self._request("GET", path, headers={"Accept": REFS_MEDIA_TYPE}).json()

    def _cached_result(self, ref: dict[str, Any]) -> tuple[Any, str, bytes | None]:
        """(cache, key, bytes) of a result in the disk cache, checked against its sha256; bytes None if absent."""
        cache = getattr(self, "_cache", None)
        if cache is None or not ref.get("sha256"):
            return None, "", None
        where = ref.get("location") or ref.get("pdr_key")
        key = self._cache_key(f"result/{where}/{ref['sha256']}")  # type: ignore[attr-defined]
        data = cache.get(key)
        if data is not None:
            try:
                verify_sha256(data, ref["sha256"], what=f"cached result {where}")
            except ResultIntegrityError:
                cache.delete(key)
                data = None
        return cache, key, data

    def _fetch(self, transformation: str, ref: dict[str, Any], kind: str) -> bytes:
        cache, cache_key, cached = self._cached_result(ref)
        if cached is not None:
            return cached
        data = self._fetch_remote(transformation, ref, kind)
        if cache is not None:
            cache.add(cache_key, data)
        return data

    def _fetch_remote(self, transformation: str, ref: dict[str, Any], kind: str) -> bytes:
        resp = self._request(
            "GET",
            f"/transformations/{transformation}/{kind}/{ref['pdr_key']}",
            headers={"Accept-Encoding": "identity", "Accept": ZSTD_MEDIA_TYPE},
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

    def _shape(self, transformation: str, datas: list[bytes], return_as: ResultFormat) -> Any:
        if return_as is ResultFormat.PROTOCOL_DAG_RESULTS:
            return [from_keyed_chain(decode_result(d), self._as_gufe) for d in datas]
        if return_as is ResultFormat.PROTOCOL_RESULTS and not datas:
            return []
        if return_as is ResultFormat.PROTOCOL_RESULT and not datas:
            return None
        chain = json.loads(self._request("GET", f"/transformations/{transformation}").text)
        if self._as_gufe:
            pdrs = [from_keyed_chain(decode_result(d), True) for d in datas]
            return gather_gufe(from_keyed_chain(chain, True), pdrs, return_as)
        if return_as is ResultFormat.PROTOCOL_RESULTS:
            return [gather_results(chain, [d]) for d in datas]
        return gather_results(chain, datas)

    def get_transformation_results(
        self,
        transformation: SK,
        return_as: ResultFormatLike = ResultFormat.PROTOCOL_RESULT,
        return_protocoldagresults: bool | None = None,
        compress: bool = True,
        visualize: bool = True,
    ) -> Any:
        """Successful results of a transformation, shaped by ``return_as`` (as alchemiscale 0.8).

        With gufe: ``'ProtocolResult'`` gives the protocol's own ``ProtocolResult``
        (``Transformation.gather``; ``.get_estimate()``, ``.get_uncertainty()``), or None without
        results; ``'ProtocolResults'`` one per ProtocolDAGResult; ``'ProtocolDAGResults'`` the gufe
        ProtocolDAGResults. Without gufe: a dict ``{"estimate", "uncertainty", "units",
        "n_results", ...}`` (or a list of them) and keyed chains. ``'refs'``: references
        (location, sha256, size, task ...) only. Every downloaded document is checked against
        its recorded sha256. ``return_protocoldagresults`` is deprecated, as in alchemiscale.
        """
        fmt = _result_format(return_as, return_protocoldagresults)
        tf = seg(transformation)
        refs = self._refs(f"/transformations/{tf}/results")
        if fmt is ResultFormat.REFS:
            return refs
        return self._shape(tf, self._fetch_all(tf, refs, "results", visualize), fmt)

    def get_transformation_failures(
        self,
        transformation: SK,
        compress: bool = True,
        visualize: bool = True,
        *,
        return_as: FailureFormat = "ProtocolDAGResults",
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
                    json_body=wire_body(LocationsBody, locations=[r["location"] for r in chunk]),
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
        self, network: SK, ok: bool, return_as: ResultFormat, visualize: bool
    ) -> dict[ScopedKey, Any]:
        net = sk_str(network)
        tfs = self._get(f"/networks/{seg(net)}/transformations")
        refs: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(tfs), 1000):
            refs.update(
                self._post(
                    "/bulk/transformations/results",
                    wire_body(BulkResultsBody, transformations=tfs[start : start + 1000], ok=ok),
                )
            )
        if return_as is ResultFormat.REFS:
            return {ScopedKey.from_str(tf): refs[tf] for tf in tfs}
        flat = [r for tf in tfs for r in refs[tf]]
        datas = iter(self._download(flat, visualize))
        per_tf = {tf: [next(datas) for _ in refs[tf]] for tf in tfs}
        if return_as is ResultFormat.PROTOCOL_DAG_RESULTS:
            return {
                ScopedKey.from_str(tf): [
                    from_keyed_chain(decode_result(d), self._as_gufe) for d in per_tf[tf]
                ]
                for tf in tfs
            }
        # Gather each transformation from the network's chain (one download, not one per edge).
        chain = self._network_chain(net)
        out: dict[ScopedKey, Any] = {}
        if self._as_gufe:
            # one gufe load of the network; its edges are the Transformations to gather with
            edges = {t.key: t for t in from_keyed_chain([list(e) for e in chain], True).edges}
            for tf in tfs:
                pdrs = [from_keyed_chain(decode_result(d), True) for d in per_tf[tf]]
                out[ScopedKey.from_str(tf)] = gather_gufe(edges[_gufe_key(tf)], pdrs, return_as)
            return out
        for tf in tfs:
            sub = [list(e) for e in chain.subchain(_gufe_key(tf))]
            if return_as is ResultFormat.PROTOCOL_RESULTS:
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
        self,
        network: SK,
        return_as: ResultFormatLike = ResultFormat.PROTOCOL_RESULT,
        return_protocoldagresults: bool | None = None,
        compress: bool = True,
        visualize: bool = True,
    ) -> dict[ScopedKey, Any]:
        """``{transformation: result}`` over the network, as ``get_transformation_results`` shapes it
        (with gufe: ``{transformation: ProtocolResult | None}`` by default).

        Bulk: one request for every reference, results downloaded in bundles, and each
        transformation gathered from the network's chain, loaded once.
        """
        fmt = _result_format(return_as, return_protocoldagresults)
        return self._network_results(network, True, fmt, visualize)

    def get_network_failures(
        self,
        network: SK,
        compress: bool = True,
        visualize: bool = True,
        *,
        return_as: FailureFormat = "ProtocolDAGResults",
    ) -> dict[ScopedKey, list[Any]]:
        """``{transformation: [failed result documents]}`` (or their ``'refs'``, with tracebacks)."""
        if return_as not in ("ProtocolDAGResults", "refs"):
            raise ValueError(f"unknown return_as {return_as!r}")
        return self._network_results(network, False, ResultFormat(return_as), visualize)

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
        self,
        task: SK,
        compress: bool = True,
        visualize: bool = True,
        *,
        return_as: FailureFormat = "ProtocolDAGResults",
    ) -> list[Any]:
        """Successful result documents of one task (or their ``'refs'``)."""
        return self._task_docs(task, "results", return_as, visualize)

    def get_task_failures(
        self,
        task: SK,
        compress: bool = True,
        visualize: bool = True,
        *,
        return_as: FailureFormat = "ProtocolDAGResults",
    ) -> list[Any]:
        """Failed result documents of one task (or their ``'refs'``, with tracebacks)."""
        return self._task_docs(task, "failures", return_as, visualize)


def _gufe_key(scoped_key: str) -> str:
    """The gufe key of a ScopedKey string (``<gufe key>-<org>-<campaign>-<project>``)."""
    return scoped_key.rsplit("-", 3)[0]
