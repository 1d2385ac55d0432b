"""ProtocolDAGResult documents without gufe: build, encode, decode and summarize them.

A ProtocolDAGResult (PDR) travels as zstd(utf-8(keyed-chain JSON)), exactly what gufe's
``json.dumps(pdr.to_keyed_chain(), cls=JSON_HANDLER.encoder)`` gives (gufe-format.md §2, §4).
The entry builders here write the same fields, in the same order, as gufe's ``_to_dict``;
ProtocolUnit / ProtocolUnitResult / ProtocolUnitFailure get random keys, the PDR a content key.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

import zstandard

from ..gufekeys import gufe_ref, make_key, random_key

__all__ = [
    "PDRSummary",
    "dag_result_entry",
    "datetime_json",
    "decode_result",
    "encode_result",
    "summarize",
    "unit_entry",
    "unit_failure_entry",
    "unit_result_entry",
]

_UNIT_RESULT_MODULE = "gufe.protocols.protocolunit"
_DAG_MODULE = "gufe.protocols.protocoldag"


def datetime_json(value: _dt.datetime) -> dict:
    """gufe's DATETIME codec form."""
    return {
        "__class__": "datetime",
        "__module__": "datetime",
        ":is_custom:": True,
        "isotime": value.isoformat(),
    }


def encode_result(chain: list) -> bytes:
    """zstd-compressed keyed-chain JSON (what the compute service uploads)."""
    return zstandard.ZstdCompressor().compress(json.dumps(chain).encode("utf-8"))


def decode_result(data: bytes) -> list:
    """Parse a stored PDR: zstd JSON, or plain JSON (alchemiscale's client accepts both)."""
    try:
        # decompressobj copes with frames that do not record their content size
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    except zstandard.ZstdError:
        raw = data
    return json.loads(raw)


def unit_entry(qualname: str, module: str, inputs: dict, name: str | None) -> tuple[str, dict]:
    """A ProtocolUnit keyed dict (fields: inputs, name, _key) with a fresh random key."""
    key = random_key(qualname)
    return key, {
        "inputs": inputs,
        "name": name,
        "_key": key,
        "__qualname__": qualname,
        "__module__": module,
        ":version:": 1,
    }


def _result_fields(
    qualname: str, unit_key: str, unit: dict, outputs: dict, start: _dt.datetime, end: _dt.datetime
) -> tuple[str, dict]:
    key = random_key(qualname)
    return key, {
        "name": unit["name"],
        "_key": key,
        "source_key": unit_key,
        "inputs": unit["inputs"],
        "outputs": outputs,
        "stderr": {},
        "stdout": {},
        "start_time": datetime_json(start),
        "end_time": datetime_json(end),
    }


def unit_result_entry(
    unit_key: str, unit: dict, outputs: dict, start: _dt.datetime, end: _dt.datetime
) -> tuple[str, dict]:
    """A successful ProtocolUnitResult of ``unit`` (whose inputs hold no unit references)."""
    key, d = _result_fields("ProtocolUnitResult", unit_key, unit, outputs, start, end)
    d.update({"__qualname__": "ProtocolUnitResult", "__module__": _UNIT_RESULT_MODULE, ":version:": 1})
    return key, d


def unit_failure_entry(
    unit_key: str,
    unit: dict,
    exception: tuple[str, list],
    traceback: str,
    start: _dt.datetime,
    end: _dt.datetime,
) -> tuple[str, dict]:
    """A ProtocolUnitFailure of ``unit``: ``exception`` is ``(qualname, args)``, outputs empty."""
    key, d = _result_fields("ProtocolUnitFailure", unit_key, unit, {}, start, end)
    d.update(
        {
            "exception": [exception[0], list(exception[1])],
            "traceback": traceback,
            "__qualname__": "ProtocolUnitFailure",
            "__module__": _UNIT_RESULT_MODULE,
            ":version:": 1,
        }
    )
    return key, d


def dag_result_entry(
    name: str | None,
    unit_keys: list[str],
    result_keys: list[str],
    transformation_key: str | None,
    extends_key: str | None,
) -> tuple[str, dict]:
    """The ProtocolDAGResult keyed dict and its content key."""
    d = {
        "name": name,
        "protocol_units": [gufe_ref(k) for k in unit_keys],
        "protocol_unit_results": [gufe_ref(k) for k in result_keys],
        "transformation_key": transformation_key,
        "extends_key": extends_key,
        "__qualname__": "ProtocolDAGResult",
        "__module__": _DAG_MODULE,
        ":version:": 1,
    }
    return make_key(d), d


@dataclass
class PDRSummary:
    """What the service and the client need from a PDR, read without gufe."""

    key: str
    ok: bool
    transformation_key: str | None
    extends_key: str | None
    n_units: int
    n_results: int
    tracebacks: list[str] = field(default_factory=list)
    failed_units: list[str | None] = field(default_factory=list)


def summarize(chain: list) -> PDRSummary:
    """Read a PDR keyed chain (root last): ``ok`` as gufe's ``ProtocolDAGResult.ok()``.

    ok means every protocol unit has at least one successful result; tracebacks and failed
    unit names come from the failures in execution order.
    """
    entries: dict[str, Any] = {k: d for k, d in chain}
    key, root = chain[-1][0], chain[-1][1]
    if root.get("__qualname__") != "ProtocolDAGResult":
        raise ValueError(f"the last entry is a {root.get('__qualname__')!r}, not a ProtocolDAGResult")
    units = [r[":gufe-key:"] for r in root["protocol_units"]]
    results = [entries[r[":gufe-key:"]] for r in root["protocol_unit_results"]]
    succeeded = {r["source_key"] for r in results if "exception" not in r}
    failures = [r for r in results if "exception" in r]
    return PDRSummary(
        key=key,
        ok=all(u in succeeded for u in units),
        transformation_key=root.get("transformation_key"),
        extends_key=root.get("extends_key"),
        n_units=len(units),
        n_results=len(results),
        tracebacks=[f.get("traceback") or "" for f in failures],
        failed_units=[f.get("name") for f in failures],
    )
