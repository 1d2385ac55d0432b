"""``alchemiscale-local config ...``: inspect the resolved settings."""

from __future__ import annotations

import json

import typer

from alchemiscale_local.settings import default_config_file, masked_dump

from ._common import console, handle_errors, settings_from

app = typer.Typer(help="Inspect the resolved settings.", no_args_is_help=True)


@app.command("show")
@handle_errors
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="plain JSON (no colour), for scripts"),
) -> None:
    """Print the resolved settings (file < env < flags), secrets masked."""
    settings = settings_from(ctx)
    data = masked_dump(settings)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=False))
        return
    console.print(f"[dim]config file: {default_config_file()}[/]")
    console.print_json(data=data)
