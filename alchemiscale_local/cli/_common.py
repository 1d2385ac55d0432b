"""Shared CLI plumbing: global options -> settings overrides, consoles, error handling.

Sub-apps get their settings with ``settings_from(ctx)``; the root callback stores
the global flags (``--name``, ``--data-dir``, ``--launcher``) in ``ctx.obj``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from alchemiscale_local.settings import Settings, load_settings

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

#: exit code for a failed operation (Neo4j did not start, mvn failed, ...)
EXIT_FAILURE = 1
#: exit code for bad input (invalid settings or flags)
EXIT_USAGE = 2


@dataclass
class CliState:
    """What the root callback collected: keyword overrides for ``load_settings``."""

    overrides: dict[str, Any] = field(default_factory=dict)


def state(ctx: typer.Context) -> CliState:
    """The CLI state on the root context (created if a sub-app runs on its own)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif isinstance(value, dict):
            out[key] = {k: v for k, v in value.items() if v is not None}
        else:
            out[key] = value
    return out


def settings_from(ctx: typer.Context, **extra: Any) -> Settings:
    """Resolve settings: file < env < global flags < ``extra`` (a command's own flags)."""
    overrides = _merge(state(ctx).overrides, extra)
    return load_settings(**overrides)


def fail(message: str, code: int = EXIT_FAILURE) -> typer.Exit:
    """Print ``message`` as an error and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn expected exceptions into a clear message and exit code 1 (2 for bad settings)."""
    from pydantic import ValidationError

    from alchemiscale_local.launchers.neo4j.base import Neo4jLauncherError
    from alchemiscale_local.launchers.ownership import DeploymentError

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except ValidationError as exc:
            lines = [
                f"  {'.'.join(str(p) for p in e['loc']) or '(settings)'}: {e['msg']}" for e in exc.errors()
            ]
            raise fail("invalid settings:\n" + "\n".join(lines), EXIT_USAGE) from None
        except (Neo4jLauncherError, DeploymentError) as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except (OSError, ValueError) as exc:
            raise fail(f"{type(exc).__name__}: {exc}") from None

    return wrapper  # type: ignore[return-value]
