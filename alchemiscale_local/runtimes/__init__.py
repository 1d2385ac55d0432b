"""Runtimes: how a compute service executes a Task's protocol and gathers its results.

``toy`` (smoke tests and examples; its numbers are not chemistry) and ``gufe`` (any gufe
Protocol; gufe imported lazily) ship here; third parties add theirs through the entry point
group ``alchemiscale_local.runtimes``.
"""

from .base import (
    ExecutionOutcome,
    ExecutionRequest,
    Runtime,
    RuntimeNotAvailable,
    failed_outcome,
    protocol_of,
    transformation_key_of,
)
from .pdr import PDRSummary, decode_result, encode_result, summarize
from .registry import (
    ENTRY_POINT_GROUP,
    available_runtimes,
    load_runtimes,
    runtime_for,
    runtime_for_transformation,
    select_runtime,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ExecutionOutcome",
    "ExecutionRequest",
    "PDRSummary",
    "Runtime",
    "RuntimeNotAvailable",
    "available_runtimes",
    "decode_result",
    "encode_result",
    "failed_outcome",
    "load_runtimes",
    "protocol_of",
    "runtime_for",
    "runtime_for_transformation",
    "select_runtime",
    "summarize",
    "transformation_key_of",
]
