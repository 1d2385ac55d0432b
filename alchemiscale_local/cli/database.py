"""``alchemiscale-local database check|reset``: the deployment's Neo4j state store."""

from __future__ import annotations

import typer
from rich.table import Table

from alchemiscale_local.backends.statestore.errors import StateStoreError
from alchemiscale_local.backends.statestore.maintenance import database_report, reset_database

from ._common import console, fail, handle_errors, settings_from
from .identity import open_store

app = typer.Typer(
    help="Check or reset the state store (needs the deployment's Neo4j running).", no_args_is_help=True
)


def deployment_running(settings) -> bool:  # noqa: ANN001
    """Whether the deployment's owner process (``up``) is alive."""
    from alchemiscale_local.deployment import _owner_alive, read_state

    state = read_state(settings)
    return state is not None and _owner_alive(state)


@app.command("check")
@handle_errors
def check(ctx: typer.Context) -> None:
    """Connect, make sure the schema is there, and print node counts by label."""
    settings = settings_from(ctx)
    with open_store(settings) as store:
        try:
            report = database_report(store)
        except StateStoreError as exc:
            raise fail(str(exc)) from None
    table = Table(title=f"state store of {settings.name!r}: reachable")
    table.add_column("label")
    table.add_column("nodes", justify="right")
    for label, n in report["counts"].items():
        table.add_row(label, str(n))
    console.print(table)
    console.print(f"constraints: {len(report['constraints'])}")


@app.command("reset")
@handle_errors
def reset(
    ctx: typer.Context,
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    force: bool = typer.Option(False, "--force", help="reset even while the deployment runs"),
    identities: bool = typer.Option(False, "--identities", help="delete identities too"),
) -> None:
    """Delete every network, task, result reference and service registration (identities are
    kept unless --identities). Result files in the object store are left as they are."""
    settings = settings_from(ctx)
    if deployment_running(settings) and not force:
        raise fail(
            f"deployment {settings.name!r} is running: stop it with `alchemiscale-local down` "
            "first, or pass --force"
        )
    what = "everything, identities included" if identities else "everything except identities"
    if not yes and not typer.confirm(f"Delete {what} from the state store of {settings.name!r}?"):
        raise fail("not reset")
    with open_store(settings) as store:
        try:
            deleted = reset_database(store, keep_identities=not identities)
        except StateStoreError as exc:
            raise fail(str(exc)) from None
    console.print(f"reset: {deleted} nodes deleted")
