"""The runtime interface: how a compute service runs a Task's protocol and reads its results.

A runtime turns a Transformation keyed chain into a ProtocolDAGResult document (the bytes that
get uploaded) and gathers several such documents into an estimate. Runtimes are found through
the ``alchemiscale_local.runtimes`` entry point group (see :mod:`.registry`).
"""

from __future__ import annotations

import datetime as _dt
import types
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pdr import dag_result_entry, encode_result, unit_entry, unit_failure_entry

__all__ = [
    "FAILURE_UNIT_QUALNAME",
    "ExecutionOutcome",
    "ExecutionRequest",
    "Runtime",
    "RuntimeNotAvailable",
    "failed_outcome",
    "protocol_of",
    "transformation_key_of",
]


class RuntimeNotAvailable(RuntimeError):
    """The runtime a protocol needs cannot run here; the message says what to install."""


@dataclass
class ExecutionRequest:
    """One Task to run.

    ``transformation`` is the Transformation's keyed chain (parsed JSON, root last); ``extends``
    the zstd keyed-chain JSON of the ProtocolDAGResult the Task extends; ``workdir`` a per-task
    directory. ``options``: ``keep_shared``, ``keep_scratch`` (bools) and ``shared_dir``,
    ``scratch_dir`` (paths; default ``workdir/shared`` and ``workdir/scratch``).
    """

    task_key: str
    transformation: list
    extends: bytes | None
    workdir: Path
    n_retries: int = 0
    options: dict = field(default_factory=dict)

    @property
    def shared_dir(self) -> Path:
        """Where the protocol's shared files go (``options["shared_dir"]`` or ``workdir/shared``)."""
        return Path(self.options.get("shared_dir") or self.workdir / "shared")

    @property
    def scratch_dir(self) -> Path:
        """Where the protocol's scratch files go (``options["scratch_dir"]`` or ``workdir/scratch``)."""
        return Path(self.options.get("scratch_dir") or self.workdir / "scratch")


@dataclass
class ExecutionOutcome:
    """``result`` is exactly what gets uploaded: zstd keyed-chain JSON of a ProtocolDAGResult."""

    result: bytes
    ok: bool
    pdr_key: str
    tracebacks: list[str] = field(default_factory=list)


class Runtime(ABC):
    """Runs protocols of some modules. Subclasses need a no-argument constructor."""

    name: str = ""
    #: a fallback runtime is chosen only when no other runtime handles the protocol
    fallback: bool = False

    @abstractmethod
    def handles(self, protocol_module: str, protocol_qualname: str) -> bool:
        """Whether this runtime runs protocols of this class."""

    def availability_error(self, protocol_module: str, protocol_qualname: str) -> str | None:
        """None if the protocol can run here, else a message naming what to install."""
        return None

    def available(self) -> bool:
        """Whether this runtime's own requirements are importable."""
        return True

    @abstractmethod
    def execute(self, request: ExecutionRequest) -> ExecutionOutcome:
        """Run the Task's ProtocolDAG; protocol failures give ``ok=False``, not an exception."""

    @abstractmethod
    def gather(self, transformation: list, results: list[bytes]) -> dict[str, Any]:
        """Estimate from successful results: ``{"estimate", "uncertainty", "units", "n_results", ...}``."""


def transformation_key_of(transformation: list) -> str | None:
    """Key of the chain's root entry (the Transformation), or None for an unusable chain."""
    try:
        key = transformation[-1][0]
    except (IndexError, KeyError, TypeError):
        return None
    return key if isinstance(key, str) else None


def protocol_of(transformation: list) -> tuple[str, str]:
    """``(__module__, __qualname__)`` of the protocol the Transformation (the root) references."""
    entries = {k: d for k, d in transformation}
    root = transformation[-1][1]
    ref = root.get("protocol") if isinstance(root, dict) else None
    if not isinstance(ref, dict) or ref.get(":gufe-key:") not in entries:
        raise ValueError("the chain's root does not reference a protocol in the chain")
    proto = entries[ref[":gufe-key:"]]
    return proto["__module__"], proto["__qualname__"]


#: the unit that stands for a Task that could not run (see :func:`failed_outcome`)
FAILURE_UNIT_QUALNAME = "ExecutionFailureUnit"


def failed_outcome(
    task_key: str,
    transformation: list,
    message: str,
    traceback_text: str,
    *,
    exception_qualname: str = "RuntimeError",
    extends_key: str | None = None,
) -> ExecutionOutcome:
    """A real failed ProtocolDAGResult for a Task whose protocol never produced one.

    Used when no DAG could be built or the protocol process died (e.g. "protocol process killed
    by signal SIGSEGV"). The document holds one ``ExecutionFailureUnit`` and one
    ProtocolUnitFailure whose ``exception`` is ``[exception_qualname, [message]]``. With gufe
    installed it loads as a gufe ProtocolDAGResult (the unit class is built lazily below).
    """
    now = _dt.datetime.now()
    unit_key, unit = unit_entry(FAILURE_UNIT_QUALNAME, __name__, {}, "alchemiscale-local: task did not run")
    fail_key, fail = unit_failure_entry(
        unit_key, unit, (exception_qualname, [message]), traceback_text, now, now
    )
    pdr_key, pdr = dag_result_entry(
        task_key, [unit_key], [fail_key], transformation_key_of(transformation), extends_key
    )
    chain = [[unit_key, unit], [fail_key, fail], [pdr_key, pdr]]
    return ExecutionOutcome(
        result=encode_result(chain), ok=False, pdr_key=pdr_key, tracebacks=[traceback_text]
    )


_failure_unit_cls: type | None = None


def __getattr__(name: str) -> Any:
    # gufe loads a unit by importing its __module__ and getattr(module, __qualname__); building
    # the class only then keeps gufe out of every process that merely imports this module.
    global _failure_unit_cls
    if name != FAILURE_UNIT_QUALNAME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _failure_unit_cls is None:
        from gufe import ProtocolUnit

        def _execute(ctx: Any, **inputs: Any) -> dict:
            raise RuntimeError("this unit records a task that alchemiscale-local could not run")

        def body(ns: dict) -> None:
            ns.update(
                {
                    "__module__": __name__,
                    "__qualname__": FAILURE_UNIT_QUALNAME,
                    "__doc__": "Stands for a Task that could not run (no DAG, or the protocol process died).",
                    "_execute": staticmethod(_execute),
                }
            )

        # types.new_class resolves gufe's metaclass (registry + ABC) as a class statement would
        _failure_unit_cls = types.new_class(FAILURE_UNIT_QUALNAME, (ProtocolUnit,), exec_body=body)
    return _failure_unit_cls
