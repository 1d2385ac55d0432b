"""Keep a protocol's device setting inside the service's GPU pinning.

A service pinned with ``CUDA_VISIBLE_DEVICES=<one device>`` sees that device as index 0 and
nothing else. A protocol setting such as openfe's ``engine_settings.gpu_device_index = [1]``
would name a device outside the pinning (CUDA then fails with an opaque "invalid device
ordinal", or on a host that pins differently runs on another service's GPU). Rewriting the
setting would change the Transformation's key, so such a task is refused with a message that
says what to set instead: ``None`` or ``[0]`` (device 0 *is* the service's pinned GPU).

Works on the keyed chain (plain JSON), so it needs no gufe and runs for every runtime.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: setting names that select a GPU by index (openfe: gpu_device_index; others: device_index)
DEVICE_SETTING_NAMES = frozenset(
    {"gpu_device_index", "device_index", "gpu_device_indices", "cuda_device_index"}
)


class DevicePinningError(RuntimeError):
    """A protocol setting names a GPU the pinned service cannot see."""


def visible_device_count(cuda_visible_devices: str | None) -> int | None:
    """How many devices the process sees; None when it is not pinned (variable unset)."""
    if cuda_visible_devices is None:
        return None
    return len([d for d in cuda_visible_devices.split(",") if d.strip()])


def device_settings(chain: list) -> Iterator[tuple[str, Any]]:
    """``(dotted path, value)`` of each non-null device-index setting in the chain's protocols."""

    def walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(value, dict):
            for key, sub in value.items():
                here = f"{path}.{key}" if path else str(key)
                if key in DEVICE_SETTING_NAMES and sub is not None:
                    yield here, sub
                else:
                    yield from walk(sub, here)
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                yield from walk(sub, f"{path}[{i}]")

    for entry in chain:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
            continue
        doc = entry[1]
        settings = doc.get("settings")
        if isinstance(settings, dict):
            yield from walk(settings, f"{doc.get('__qualname__', 'protocol')}.settings")


def _indices(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [value]


def pinning_problem(chain: list, cuda_visible_devices: str | None) -> str | None:
    """None when every device setting fits the pinning, else the reason the task is refused."""
    count = visible_device_count(cuda_visible_devices)
    if count is None or count == 0:
        return None  # unpinned: the protocol picks freely; CPU-only: the platform reports itself
    for path, value in device_settings(chain):
        bad = []
        for index in _indices(value):
            try:
                ok = 0 <= int(index) < count
            except (TypeError, ValueError):
                ok = False
            if not ok:
                bad.append(index)
        if bad:
            allowed = "[0]" if count == 1 else f"indices 0..{count - 1}"
            return (
                f"protocol setting {path} = {value!r} names a GPU outside this service's pinning: "
                f"CUDA_VISIBLE_DEVICES={cuda_visible_devices} shows {count} device(s), numbered from 0 "
                f"(device 0 is the service's GPU). Set it to None or {allowed} and resubmit; "
                "alchemiscale-local assigns GPUs to services, not protocols."
            )
    return None


def check_pinning(chain: list, cuda_visible_devices: str | None) -> None:
    """Raise :class:`DevicePinningError` when :func:`pinning_problem` finds one."""
    problem = pinning_problem(chain, cuda_visible_devices)
    if problem is not None:
        raise DevicePinningError(problem)
