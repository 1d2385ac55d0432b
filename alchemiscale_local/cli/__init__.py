"""The ``alchemiscale-local`` command line.

The root app holds global flags that override settings (``--name``, ``--data-dir``,
``--config-dir``, ``--launcher``) and assembles sub-apps. To add one, write
``cli/<topic>.py`` defining a ``typer.Typer`` named ``app`` and list it in
``SUB_APPS``; its commands resolve settings with
``_common.settings_from(ctx, **their_own_overrides)`` and are wrapped in
``_common.handle_errors``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from alchemiscale_local import __version__

from . import compute as _compute
from . import config as _config
from . import database as _database
from . import deploy as _deploy
from . import identity as _identity
from . import neo4j as _neo4j
from ._common import CliState

#: (name, sub-app) pairs mounted on the root app, in help order
SUB_APPS: list[tuple[str, typer.Typer]] = [
    ("config", _config.app),
    ("database", _database.app),
    ("identity", _identity.app),
    ("neo4j", _neo4j.app),
]


class LauncherChoice(str, Enum):
    """Values of ``--launcher``."""

    auto = "auto"
    jar = "jar"
    docker = "docker"
    external = "external"


app = typer.Typer(
    name="alchemiscale-local",
    help="Single-host alchemiscale-style deployment: Neo4j state store, APIs, compute services.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"alchemiscale-local {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    name: str | None = typer.Option(None, "--name", help="deployment name (settings.name)"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data directory"),
    config_dir: Path | None = typer.Option(None, "--config-dir", help="config/secrets directory"),
    launcher: LauncherChoice | None = typer.Option(
        None, "--launcher", help="how to run Neo4j (settings.neo4j.launcher)"
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Global flags override the settings file and ALCHEMISCALE_LOCAL_* variables."""
    overrides: dict = {"name": name, "data_dir": data_dir, "config_dir": config_dir}
    if launcher is not None:
        overrides["neo4j"] = {"launcher": launcher.value}
    ctx.obj = CliState(overrides={k: v for k, v in overrides.items() if v is not None})


_deploy.register(app)  # up, down, status, logs at the top level
_compute.register(app)  # compute: services for a deployment elsewhere
for _name, _sub in SUB_APPS:
    app.add_typer(_sub, name=_name)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="alchemiscale-local")


__all__ = ["app", "main"]
