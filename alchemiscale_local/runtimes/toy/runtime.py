"""ToyRuntime: executes the TOY protocol into real ProtocolDAGResult documents.

With gufe installed the toy is a real gufe Protocol (``gufe_protocol``) and runs under gufe's
``execute_DAG`` like any other; without gufe this module writes the same documents itself.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import statistics
import sys
import time
import traceback
from typing import Any

from ..base import ExecutionOutcome, ExecutionRequest, Runtime, transformation_key_of
from ..gufe import GufeRuntime, _find_spec
from ..pdr import (
    dag_result_entry,
    decode_result,
    encode_result,
    summarize,
    unit_entry,
    unit_failure_entry,
    unit_result_entry,
)
from .outputs import write_toy_outputs
from .protocol import TOY_MODULE, TOY_NOTE, TOY_UNITS, ToyFailure, ToyProtocol, toy_fails, toy_value

__all__ = ["ToyFailure", "ToyRuntime", "abort_process", "gufe_available"]


def gufe_available() -> bool:
    """Whether gufe is importable here (found, not imported: the server never imports gufe)."""
    return _find_spec("gufe") is not None


class _ToyGufeRuntime(GufeRuntime):
    """gufe's runtime, creating the DAG with the transformation name the toy's ``fail_on`` reads."""

    def create_dag(self, transformation: Any, extends: Any, task_key: str) -> Any:
        return transformation.protocol.create(
            stateA=transformation.stateA,
            stateB=transformation.stateB,
            mapping=transformation.mapping,
            extends=extends,
            name=task_key,
            transformation_key=transformation.key,
            transformation_name=transformation.name,
        )


UNIT_QUALNAME = "ToyUnit"


def abort_process() -> None:
    # a fault-test feature: die like a native crash, without leaving a core file behind
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os.abort()


def _failure_traceback(message: str) -> str:
    try:
        raise ToyFailure(message)
    except ToyFailure:
        return traceback.format_exc()


def _previous_repeats(extends: bytes) -> tuple[str, int]:
    """Key of the extended result and the first repeat index after its toy units."""
    chain = decode_result(extends)
    repeats = [
        d["inputs"]["repeat"]
        for _, d in chain
        if d.get("__qualname__") == UNIT_QUALNAME and isinstance(d.get("inputs"), dict)
    ]
    return chain[-1][0], max(repeats, default=-1) + 1


class ToyRuntime(Runtime):
    """Runs :class:`~alchemiscale_local.runtimes.toy.ToyProtocol` (a toy; numbers are not chemistry)."""

    name = "toy"

    def handles(self, protocol_module: str, protocol_qualname: str) -> bool:
        return protocol_module == TOY_MODULE or protocol_module.startswith(TOY_MODULE + ".")

    def execute(self, request: ExecutionRequest) -> ExecutionOutcome:
        if gufe_available():
            return _ToyGufeRuntime().execute(request)
        return self._execute_plain(request)

    def _execute_plain(self, request: ExecutionRequest) -> ExecutionOutcome:
        """The gufe-free path: the same documents as gufe's ``execute_DAG`` would write."""
        entries = {k: d for k, d in request.transformation}
        tf_key = transformation_key_of(request.transformation)
        if tf_key is None or entries[tf_key].get("__qualname__") != "Transformation":
            raise ValueError("the request's chain must end with its Transformation")
        tf = entries[tf_key]
        settings = ToyProtocol.from_keyed_dict(entries[tf["protocol"][":gufe-key:"]]).settings
        for sub in ("shared", "scratch"):
            (request.workdir / sub).mkdir(parents=True, exist_ok=True)
        if settings.abort:
            abort_process()

        extends_key, first = (None, 0) if request.extends is None else _previous_repeats(request.extends)
        units = [
            unit_entry(
                UNIT_QUALNAME,
                TOY_MODULE,
                {
                    "settings": settings.to_json_codec(),
                    "transformation_key": tf_key,
                    "repeat": r,
                    "task_key": request.task_key,
                    "transformation_name": tf.get("name"),
                },
                f"toy repeat {r}",
            )
            for r in range(first, first + settings.repeats)
        ]
        # gufe's DAG order for independent units: reversed lexicographic, i.e. keys descending
        units.sort(key=lambda e: e[0], reverse=True)
        failure = toy_fails(request.task_key, tf.get("name"), settings)

        results: list[tuple[str, dict]] = []
        tracebacks: list[str] = []
        for unit_key, unit in units:
            if failure is not None:
                # every attempt fails; like execute_DAG, stop after the unit's last retry
                for _ in range(request.n_retries + 1):
                    start = _dt.datetime.now()
                    time.sleep(settings.duration_s)
                    tb = _failure_traceback(failure)
                    results.append(
                        unit_failure_entry(
                            unit_key, unit, ("ToyFailure", [failure]), tb, start, _dt.datetime.now()
                        )
                    )
                    tracebacks.append(tb)
                break
            start = _dt.datetime.now()
            time.sleep(settings.duration_s)
            repeat = unit["inputs"]["repeat"]
            outputs = {
                "repeat": repeat,
                "value": toy_value(tf_key, repeat, settings.seed),
                "units": TOY_UNITS,
                "toy": True,
                "note": TOY_NOTE,
            }
            results.append(unit_result_entry(unit_key, unit, outputs, start, _dt.datetime.now()))

        write_toy_outputs(
            request.shared_dir, request.task_key, {"ok": failure is None, "n_values": len(results)}
        )
        pdr_key, pdr = dag_result_entry(
            request.task_key, [k for k, _ in units], [k for k, _ in results], tf_key, extends_key
        )
        chain = [[k, d] for k, d in (*units, *results, (pdr_key, pdr))]
        return ExecutionOutcome(
            result=encode_result(chain), ok=failure is None, pdr_key=pdr_key, tracebacks=tracebacks
        )

    def gather(self, transformation: list, results: list[bytes]) -> dict[str, Any]:
        """Mean and standard error of every repeat value in the ok results (failed ones skipped)."""
        tf_key = transformation_key_of(transformation)
        values: list[float] = []
        n_ok = n_failed = 0
        for data in results:
            chain = decode_result(data)
            summary = summarize(chain)
            if summary.transformation_key != tf_key:
                raise ValueError(
                    f"result {summary.key} belongs to {summary.transformation_key}, not to {tf_key}"
                )
            if not summary.ok:
                n_failed += 1
                continue
            n_ok += 1
            entries = dict(chain)
            for ref in chain[-1][1]["protocol_unit_results"]:
                outputs = entries[ref[":gufe-key:"]].get("outputs") or {}
                if outputs.get("toy") is True and isinstance(outputs.get("value"), (int, float)):
                    values.append(float(outputs["value"]))
        estimate = statistics.fmean(values) if values else None
        uncertainty = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
        return {
            "estimate": estimate,
            "uncertainty": uncertainty,
            "units": TOY_UNITS,
            "n_results": n_ok,
            "n_samples": len(values),
            "n_failed_ignored": n_failed,
            "toy": True,
            "note": TOY_NOTE,
        }
