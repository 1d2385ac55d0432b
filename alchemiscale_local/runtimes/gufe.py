"""GufeRuntime: runs any gufe Protocol (openfe's, feflow's, ...) with gufe's own executor.

gufe is imported inside the methods only: importing this module must work without gufe (the
server and the registry import it). It is the fallback runtime: it takes every protocol that
no more specific runtime claims.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
from typing import Any

import zstandard

from .base import ExecutionOutcome, ExecutionRequest, Runtime, RuntimeNotAvailable
from .pdr import decode_result

__all__ = ["GufeRuntime", "install_hint"]


def _find_spec(name: str) -> Any:
    # indirection so tests can pretend a package is (not) installed
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def install_hint(needed: list[str]) -> str:
    """The command that installs these packages (gufe, openfe and friends come from conda-forge)."""
    packages = list(dict.fromkeys(needed))
    if "gufe" in packages and len(packages) > 1:
        packages.remove("gufe")  # openfe and the like pull gufe in
    return f"`mamba install -c conda-forge {' '.join(packages)}`"


def _decode(chain: list) -> Any:
    """A keyed chain as gufe's loader expects it: custom values (settings, quantities,
    datetimes, paths) decoded by gufe's JSON codecs, which plain json.loads leaves as dicts."""
    from gufe.tokenization import JSON_HANDLER

    return json.loads(json.dumps(chain), cls=JSON_HANDLER.decoder)


def _magnitude(value: Any) -> tuple[float | None, str | None]:
    if value is None:
        return None, None
    if hasattr(value, "magnitude") and hasattr(value, "units"):
        return float(value.magnitude), str(value.units)
    return float(value), None


def _storage_kwargs(execute_dag: Any, request: ExecutionRequest) -> dict[str, Any]:
    """Where shared files go: ``shared_basedir`` in released gufe (<= 1.12); gufe's storage
    branch replaces it with ``shared_storage`` / ``perm_storage`` objects."""
    params = inspect.signature(execute_dag).parameters
    if "shared_basedir" in params or "shared_storage" not in params:
        return {"shared_basedir": request.shared_dir}
    from gufe.storage.externalresource import FileStorage

    return {
        "shared_storage": FileStorage(request.shared_dir, exist_ok=True),
        "perm_storage": FileStorage(request.workdir / "permanent", exist_ok=True),
    }


class GufeRuntime(Runtime):
    """Executes gufe Transformations: ``create`` → ``execute_DAG`` → ``to_keyed_chain``."""

    name = "gufe"
    fallback = True

    def handles(self, protocol_module: str, protocol_qualname: str) -> bool:
        return True

    def available(self) -> bool:
        return _find_spec("gufe") is not None

    def availability_error(self, protocol_module: str, protocol_qualname: str) -> str | None:
        top = protocol_module.split(".", 1)[0]
        missing = [p for p in dict.fromkeys(("gufe", top)) if _find_spec(p) is None]
        if not missing:
            return None
        needs = " and ".join(dict.fromkeys(("gufe", top)))
        return (
            f"the protocol {protocol_module}.{protocol_qualname} needs {needs}, which "
            f"{'are' if len(missing) > 1 else 'is'} not installed here ({', '.join(missing)} "
            f"missing); install {'them' if len(missing) > 1 else 'it'} with conda/mamba: "
            f"{install_hint([top, *missing])}"
        )

    def _require(self) -> None:
        if not self.available():
            raise RuntimeNotAvailable(
                "the gufe runtime needs gufe, which is not installed here; "
                "install it with conda/mamba: `mamba install -c conda-forge gufe`"
            )

    def create_dag(self, transformation: Any, extends: Any, task_key: str) -> Any:
        """The Task's ProtocolDAG; alchemiscale names it after the Task, so results trace back to it."""
        return transformation.create(extends=extends, name=task_key)

    def execute(self, request: ExecutionRequest) -> ExecutionOutcome:
        self._require()
        from gufe.protocols.protocoldag import ProtocolDAGResult, execute_DAG
        from gufe.tokenization import JSON_HANDLER, KeyedChain

        transformation = KeyedChain(_decode(request.transformation)).to_gufe()
        extends = None
        if request.extends is not None:
            extends = ProtocolDAGResult.from_keyed_chain(_decode(decode_result(request.extends)))
        # alchemiscale names the DAG after the Task, so results can be traced back to it
        dag = self.create_dag(transformation, extends, request.task_key)
        for base in (request.shared_dir, request.scratch_dir):  # execute_DAG needs them to exist
            base.mkdir(parents=True, exist_ok=True)
        pdr = execute_DAG(
            dag,
            **_storage_kwargs(execute_DAG, request),
            scratch_basedir=request.scratch_dir,
            keep_shared=bool(request.options.get("keep_shared", False)),
            keep_scratch=bool(request.options.get("keep_scratch", False)),
            raise_error=False,
            n_retries=request.n_retries,
        )
        text = json.dumps(pdr.to_keyed_chain(), cls=JSON_HANDLER.encoder)
        return ExecutionOutcome(
            result=zstandard.ZstdCompressor().compress(text.encode("utf-8")),
            ok=bool(pdr.ok()),
            pdr_key=str(pdr.key),
            tracebacks=[str(f.traceback) for f in pdr.protocol_unit_failures],
        )

    def gather(self, transformation: list, results: list[bytes]) -> dict[str, Any]:
        """``Transformation.gather`` over the ok results; estimate/uncertainty as floats + units."""
        self._require()
        from gufe.protocols.protocoldag import ProtocolDAGResult
        from gufe.tokenization import KeyedChain

        tf = KeyedChain(_decode(transformation)).to_gufe()
        pdrs = [ProtocolDAGResult.from_keyed_chain(_decode(decode_result(r))) for r in results]
        ok = [p for p in pdrs if p.ok()]  # as alchemiscale: gufe itself does not filter
        out: dict[str, Any] = {
            "estimate": None,
            "uncertainty": None,
            "units": None,
            "n_results": len(ok),
            "n_failed_ignored": len(pdrs) - len(ok),
        }
        if not ok:
            return out
        protocol_result = tf.gather(ok)
        estimate = protocol_result.get_estimate()
        uncertainty = protocol_result.get_uncertainty()
        if uncertainty is not None and hasattr(uncertainty, "to") and hasattr(estimate, "units"):
            uncertainty = uncertainty.to(estimate.units)  # report both in one unit
        out["estimate"], out["units"] = _magnitude(estimate)
        out["uncertainty"], unc_units = _magnitude(uncertainty)
        out["units"] = out["units"] or unc_units
        out["protocol_result"] = type(protocol_result).__qualname__
        return out
