"""The protocol process: ``python -m alchemiscale_local.compute.child <workdir>``.

Runs one task in a process of its own, so that a crash in native code (OpenMM,
CUDA) kills this process, not the compute service. Reads ``request.json`` (and
``extends.zst``) from the workdir; writes ``result.zst`` and ``outcome.json``.
A DAG that cannot be built or any exception becomes a failed result, not a crash.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path

from alchemiscale_local.runtimes.base import ExecutionRequest, failed_outcome
from alchemiscale_local.runtimes.registry import runtime_for

from .devices import check_pinning

REQUEST = "request.json"
EXTENDS = "extends.zst"
RESULT = "result.zst"
OUTCOME = "outcome.json"


def _logging(level: str) -> None:
    """The protocol's log records go to stderr, which the service keeps as ``protocol.log``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))


def run(workdir: Path) -> int:
    spec = json.loads((workdir / REQUEST).read_text())
    _logging(spec.get("options", {}).get("loglevel", "INFO"))
    extends_path = workdir / EXTENDS
    request = ExecutionRequest(
        task_key=spec["task_key"],
        transformation=spec["transformation"],
        extends=extends_path.read_bytes() if extends_path.exists() else None,
        workdir=workdir,
        n_retries=spec.get("n_retries", 0),
        options=spec.get("options", {}),
    )
    try:
        # a protocol's GPU index must stay inside the service's CUDA_VISIBLE_DEVICES pinning
        check_pinning(request.transformation, os.environ.get("CUDA_VISIBLE_DEVICES"))
        runtime = runtime_for(spec["protocol_module"], spec["protocol"])
        outcome = runtime.execute(request)
    except Exception as exc:  # any failure to build or run the DAG is a failed task
        outcome = failed_outcome(
            request.task_key,
            request.transformation,
            f"{type(exc).__name__}: {exc}",
            traceback.format_exc(),
            exception_qualname=type(exc).__name__,
        )
    (workdir / RESULT).write_bytes(outcome.result)
    (workdir / OUTCOME).write_text(
        json.dumps({"ok": outcome.ok, "pdr_key": outcome.pdr_key, "tracebacks": outcome.tracebacks})
    )
    return 0


if __name__ == "__main__":
    from .deathsig import die_with_parent

    die_with_parent()  # no orphan keeps computing after its service is killed
    sys.exit(run(Path(sys.argv[1])))
