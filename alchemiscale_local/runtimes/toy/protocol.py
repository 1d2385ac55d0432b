"""ToyProtocol: a TOY protocol for smoke tests and examples. Its numbers are not chemistry.

Every value it produces is a deterministic function of the Transformation key (plus small
deterministic noise per repeat), so tests can predict it; no molecule is ever simulated.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ...gufekeys import make_key

__all__ = [
    "TOY_MODULE",
    "ToyFailure",
    "ToySettingsFields",
    "TOY_NOTE",
    "TOY_UNITS",
    "ToyProtocol",
    "ToySettings",
    "toy_fails",
    "toy_value",
]

#: the ``__module__`` toy documents name; the package re-exports these classes
TOY_MODULE = "alchemiscale_local.runtimes.toy"
TOY_NOTE = (
    "toy protocol: these numbers are a hash of the transformation key, not chemistry; nothing was simulated"
)
TOY_UNITS = "kcal/mol"
_NOISE_SD = 0.25  # kcal/mol: small enough that a few repeats pin the estimate


class ToyFailure(RuntimeError):
    """The failure the toy protocol simulates (``fail_rate`` / ``fail_on``)."""


class ToySettingsFields(BaseModel):
    """The toy's settings fields, shared by the plain model below and gufe's (``gufe_protocol``)."""

    model_config = ConfigDict(extra="forbid")

    duration_s: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, description="seconds each unit (repeat) sleeps"
    )
    repeats: int = Field(default=1, ge=1, le=10_000, description="units per DAG, one value each")
    fail_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="share of tasks that fail, chosen deterministically from (task key, seed)",
    )
    fail_on: list[str] = Field(default_factory=list, description="transformation names that always fail")
    abort: bool = Field(
        default=False,
        description="the protocol process calls os.abort() (fault "
        "tests: a native crash must fail the task, not the service)",
    )
    seed: int = Field(default=0, description="changes the noise and which tasks fail")


class ToySettings(ToySettingsFields):
    """Settings of the :class:`ToyProtocol` without gufe (a toy: nothing here is physical)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json_codec(self) -> dict[str, Any]:
        """gufe's SETTINGS codec form: class markers, then the fields in declaration order."""
        return {
            "__class__": "ToySettings",
            "__module__": TOY_MODULE,
            ":is_custom:": True,
            **self.model_dump(mode="json"),
        }

    @classmethod
    def from_json_codec(cls, data: dict[str, Any]) -> ToySettings:
        if data.get("__class__") != "ToySettings":
            raise ValueError(f"not ToySettings: {data.get('__class__')!r}")
        return cls(**{k: v for k, v in data.items() if k not in ("__class__", "__module__", ":is_custom:")})


class ToyProtocol:
    """A TOY protocol without gufe (with gufe, ``gufe_protocol.ToyProtocol`` is the real one): the smoke-test stand-in for a free energy protocol.

    It says so everywhere: its results carry ``"toy": true`` and a note that the numbers are
    not chemistry. Each DAG has ``settings.repeats`` independent units; a unit sleeps
    ``duration_s`` and reports :func:`toy_value` for its repeat.
    """

    def __init__(self, settings: ToySettingsFields | dict | None = None) -> None:
        if settings is None:
            settings = ToySettings()
        elif isinstance(settings, dict):
            settings = (
                ToySettings.from_json_codec(settings) if "__class__" in settings else ToySettings(**settings)
            )
        elif isinstance(settings, ToySettingsFields) and not isinstance(settings, ToySettings):
            settings = ToySettings(**settings.model_dump())  # gufe's ToySettings (gufe_protocol)
        elif not isinstance(settings, ToySettings):
            raise TypeError(f"settings must be ToySettings or a dict, got {type(settings).__name__}")
        self.settings = settings

    def to_keyed_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_json_codec(),
            "__qualname__": "ToyProtocol",
            "__module__": TOY_MODULE,
            ":version:": 1,
        }

    @property
    def key(self) -> str:
        return make_key(self.to_keyed_dict())

    @classmethod
    def from_keyed_dict(cls, data: dict[str, Any]) -> ToyProtocol:
        if data.get("__qualname__") != "ToyProtocol":
            raise ValueError(f"not a ToyProtocol: {data.get('__qualname__')!r}")
        return cls(data["settings"])

    def __repr__(self) -> str:
        return f"ToyProtocol({self.settings!r})"


def _unit_interval(text: str) -> float:
    """A number in [0, 1) from md5(text): stable across processes and platforms."""
    return int(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:13], 16) / 16**13


def toy_value(transformation_key: str, repeat: int, seed: int = 0) -> float:
    """The toy "free energy" of one repeat: a base in [-5, 5) from the key, plus noise (sd 0.25)."""
    base = _unit_interval(transformation_key) * 10.0 - 5.0
    # random.Random seeded with a str hashes it with sha512: deterministic, unlike hash()
    noise = random.Random(f"{transformation_key}:{seed}:{repeat}").gauss(0.0, _NOISE_SD)
    return round(base + noise, 6)


def toy_fails(task_key: str, transformation_name: str | None, settings: ToySettingsFields) -> str | None:
    """Why this task fails (a message), or None: ``fail_on`` names, else ``fail_rate`` by hash."""
    if transformation_name is not None and transformation_name in settings.fail_on:
        return f"toy protocol: transformation {transformation_name!r} is listed in fail_on"
    if settings.fail_rate and _unit_interval(f"{task_key}:{settings.seed}") < settings.fail_rate:
        return f"toy protocol: simulated failure (fail_rate={settings.fail_rate}, seed={settings.seed})"
    return None
