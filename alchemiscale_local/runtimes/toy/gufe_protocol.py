"""The TOY protocol as real gufe classes (imported only where gufe is installed).

Documents name :data:`TOY_MODULE` as these classes' ``__module__``, so gufe finds them through
the package's ``__getattr__`` and computes the same keys as the gufe-free builders do. Units
run under gufe's ``execute_DAG``; results gather into a :class:`ToyProtocolResult` with
``get_estimate()`` / ``get_uncertainty()`` in kcal/mol. Its numbers are not chemistry.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gufe import ChemicalSystem, Protocol, ProtocolDAG, ProtocolDAGResult, ProtocolResult, ProtocolUnit
from gufe.settings import SettingsBaseModel
from openff.units import unit

from .outputs import write_toy_outputs
from .protocol import TOY_MODULE, TOY_NOTE, TOY_UNITS, ToyFailure, ToySettingsFields, toy_fails, toy_value
from .protocol import ToySettings as PlainToySettings

__all__ = ["ToyProtocol", "ToyProtocolResult", "ToySettings", "ToyUnit"]


class ToySettings(SettingsBaseModel, ToySettingsFields):
    """Settings of the :class:`ToyProtocol` as a gufe Settings model (a toy: nothing is physical)."""

    __module__ = TOY_MODULE  # the module documents name (gufe's SETTINGS codec writes it)


def as_settings(settings: Any) -> ToySettings:
    """ToySettings from None, a dict (fields or gufe's codec form) or either ToySettings class."""
    if settings is None:
        return ToySettings()
    if isinstance(settings, ToySettings):
        return settings
    if isinstance(settings, (PlainToySettings, SettingsBaseModel)):
        return ToySettings(**settings.model_dump())
    if isinstance(settings, dict):
        return ToySettings(
            **{k: v for k, v in settings.items() if k not in ("__class__", "__module__", ":is_custom:")}
        )
    raise TypeError(f"settings must be ToySettings or a dict, got {type(settings).__name__}")


class ToyUnit(ProtocolUnit):
    """One toy repeat: sleeps ``duration_s``, then reports :func:`toy_value` (or fails as told)."""

    __module__ = TOY_MODULE

    @staticmethod
    def _execute(ctx: Any, *, settings: Any, transformation_key: str, repeat: int, **inputs: Any) -> dict:
        settings = as_settings(settings)
        if settings.abort:
            from .runtime import abort_process

            abort_process()
        time.sleep(settings.duration_s)
        failure = toy_fails(inputs.get("task_key") or "", inputs.get("transformation_name"), settings)
        shared = getattr(ctx, "shared", None)
        if isinstance(shared, str | os.PathLike):  # like a real protocol's analysis outputs, also on failure
            write_toy_outputs(
                Path(shared), inputs.get("task_key") or "", {"ok": failure is None, "repeat": repeat}
            )
        if failure is not None:
            raise ToyFailure(failure)
        return {
            "repeat": repeat,
            "value": toy_value(transformation_key, repeat, settings.seed),
            "units": TOY_UNITS,
            "toy": True,
            "note": TOY_NOTE,
        }


class ToyProtocolResult(ProtocolResult):
    """Gathered toy values: mean and standard error in kcal/mol. Not chemistry."""

    __module__ = TOY_MODULE

    def get_estimate(self) -> Any:
        values = self.data.get("values") or []
        return statistics.fmean(values) * unit.kilocalorie_per_mole if values else None

    def get_uncertainty(self) -> Any:
        values = self.data.get("values") or []
        if len(values) < 2:
            return None
        return statistics.stdev(values) / math.sqrt(len(values)) * unit.kilocalorie_per_mole


def _previous_repeat(extends: ProtocolDAGResult | None) -> int:
    if extends is None:
        return 0
    repeats = [u.inputs.get("repeat", -1) for u in extends.protocol_units if isinstance(u, ToyUnit)]
    return max(repeats, default=-1) + 1


class ToyProtocol(Protocol):
    """A TOY protocol as a gufe Protocol: ``settings.repeats`` independent :class:`ToyUnit` s.

    Which tasks fail depends on the DAG's name (alchemiscale-local names a DAG after its Task)
    and, for ``fail_on``, on the transformation name that :meth:`create` may be given.
    """

    __module__ = TOY_MODULE
    _settings_cls = ToySettings
    result_cls = ToyProtocolResult

    def __init__(self, settings: Any = None) -> None:
        super().__init__(as_settings(settings))

    @classmethod
    def _default_settings(cls) -> ToySettings:
        return ToySettings()

    def create(
        self,
        *,
        stateA: ChemicalSystem,
        stateB: ChemicalSystem,
        mapping: Any,
        extends: ProtocolDAGResult | None = None,
        name: str | None = None,
        transformation_key: Any = None,
        transformation_name: str | None = None,
    ) -> ProtocolDAG:
        """gufe's ``create``; the unit inputs also carry the DAG name (task) and transformation name."""
        if isinstance(mapping, dict):
            mapping = list(mapping.values())
        units = self._units(extends, str(transformation_key), name, transformation_name)
        return ProtocolDAG(
            name=name,
            protocol_units=units,
            transformation_key=transformation_key,
            extends_key=extends.key if extends is not None else None,
        )

    def _units(
        self,
        extends: ProtocolDAGResult | None,
        transformation_key: str,
        task_key: str | None,
        transformation_name: str | None,
    ) -> list[ProtocolUnit]:
        first = _previous_repeat(extends)
        return [
            ToyUnit(
                name=f"toy repeat {r}",
                settings=self.settings,
                transformation_key=transformation_key,
                repeat=r,
                task_key=task_key,
                transformation_name=transformation_name,
            )
            for r in range(first, first + self.settings.repeats)
        ]

    def _create(
        self,
        stateA: ChemicalSystem,
        stateB: ChemicalSystem,
        mapping: Any,
        extends: ProtocolDAGResult | None = None,
    ) -> list[ProtocolUnit]:
        return self._units(extends, "", None, None)

    def _gather(self, protocol_dag_results: Iterable[ProtocolDAGResult]) -> dict[str, Any]:
        values: list[float] = []
        n_failed = 0
        for pdr in protocol_dag_results:
            if not pdr.ok():  # as alchemiscale: a failed DAG contributes nothing
                n_failed += 1
                continue
            for res in pdr.protocol_unit_results:
                out = res.outputs
                if res.ok() and out.get("toy") is True and isinstance(out.get("value"), (int, float)):
                    values.append(float(out["value"]))
        return {
            "values": values,
            "units": TOY_UNITS,
            "n_failed_ignored": n_failed,
            "toy": True,
            "note": TOY_NOTE,
        }
