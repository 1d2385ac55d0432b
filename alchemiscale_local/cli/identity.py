"""``alchemiscale-local identity add|list|remove|add-scope|list-scope|remove-scope|export-cert``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.table import Table

from alchemiscale_local.backends.statestore import Neo4jStore
from alchemiscale_local.backends.statestore.errors import StateStoreError
from alchemiscale_local.settings import Settings

from ._common import console, fail, handle_errors, settings_from

app = typer.Typer(
    help="Manage user and compute identities (needs the deployment's Neo4j running).", no_args_is_help=True
)


@contextlib.contextmanager
def open_store(settings: Settings) -> Iterator[Neo4jStore]:
    """The state store of a running deployment, or of a Neo4j started with `neo4j start`."""
    from alchemiscale_local.deployment import read_state
    from alchemiscale_local.launchers.neo4j import get_launcher
    from alchemiscale_local.settings import settings_from_file

    state = read_state(settings)
    if state and Path(state.get("settings_file", "")).exists():
        neo = settings_from_file(Path(state["settings_file"])).neo4j
        uri, user, password, database = (
            neo.uri,
            neo.user,
            neo.password.get_secret_value() if neo.password else "",
            neo.database,
        )
    else:
        launcher = get_launcher(settings)
        if not launcher.is_running():
            raise fail(
                f"Neo4j of deployment {settings.name!r} is not running: "
                "start it with `alchemiscale-local up --detach` or `alchemiscale-local neo4j start`"
            )
        conn = launcher.connection()
        uri, user, password, database = conn.uri, conn.user, conn.password, conn.database
    store = Neo4jStore.connect(uri, user, password, database)
    try:
        store.initialize()
        yield store
    finally:
        store.close()


@app.command("add")
@handle_errors
def add(
    ctx: typer.Context,
    identifier: str = typer.Argument(..., help="the identity's name"),
    kind: str = typer.Option("user", "--kind", help="user or compute"),
    scope: list[str] = typer.Option(["*-*-*"], "--scope", help="scope it may access (repeatable)"),
    key: str | None = typer.Option(None, "--key", help="its key (default: generated and printed once)"),
    export: Path | None = typer.Option(
        None,
        "--export",
        help="write a 0600 credentials file (API URL, this identity, the certificate pin) for another "
        "host: `alchemiscale-local compute --credentials FILE` or a client's credentials_file",
    ),
    api_url: str | None = typer.Option(
        None, "--api-url", help="with --export: the URL other hosts use (default: the deployment's)"
    ),
    force: bool = typer.Option(False, "--force", help="with --export: replace an existing file"),
) -> None:
    """Create an identity and print its key (shown only now), or write it to --export FILE."""
    from .endpoint import check_target, deployment_endpoint, write_export

    settings = settings_from(ctx)
    if api_url is not None and export is None:
        raise fail("--api-url only goes with --export", 2)
    target = None
    if export is not None:  # everything checked before the identity exists
        check_target(export, force)
        target = deployment_endpoint(settings, api_url)
    with open_store(settings) as store:
        try:
            secret = store.add_identity(identifier, kind, key=key, scopes=scope)
        except StateStoreError as exc:
            raise fail(str(exc)) from None
        if export is not None and target is not None:
            try:
                write_export(export, target[0], kind, identifier, secret, target[1])
            except OSError as exc:
                store.remove_identity(identifier)  # no identity whose key nobody has
                raise fail(f"cannot write {export}: {exc}; identity {identifier} not created") from None
    console.print(f"identity [bold]{identifier}[/] ({kind}) scopes {', '.join(scope)}")
    if export is None:
        console.print(f"key: {secret}", highlight=False)
        return
    assert target is not None
    pin = target[1]
    console.print(f"credentials for {target[0]} written to {export} (0600)", highlight=False)
    if pin is not None and pin.sha256:
        from alchemiscale_local.client.pinning import colon_fingerprint

        console.print(f"pins the API certificate SHA-256 {colon_fingerprint(pin.sha256)}", highlight=False)


@app.command("export-cert")
@handle_errors
def export_cert(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="PEM file to write"),
    bundle: bool = typer.Option(
        False,
        "--bundle",
        help="append the usual public CAs (certifi), for SSL_CERT_FILE / REQUESTS_CA_BUNDLE",
    ),
    force: bool = typer.Option(False, "--force", help="replace an existing file"),
) -> None:
    """Write the API's certificate (PEM) for clients that verify the usual way (alchemiscale's).

    Then e.g. ``REQUESTS_CA_BUNDLE=FILE SSL_CERT_FILE=FILE python script.py`` (requests and httpx
    read these), with the URL's host one the certificate names. Without --bundle the file trusts
    this deployment only, so other HTTPS sites fail in that process.
    """
    from alchemiscale_local.client.pinning import colon_fingerprint, pem_fingerprint

    from .endpoint import certificate_pem, check_target, write_0600

    settings = settings_from(ctx)
    pem = certificate_pem(settings)
    if pem is None:
        raise fail(
            f"deployment {settings.name!r} has no certificate: it serves HTTPS once started with "
            "`up --bind ADDRESS` (or --tls-cert)"
        )
    check_target(path, force)
    text = pem if pem.endswith("\n") else pem + "\n"
    if bundle:
        import certifi

        text += Path(certifi.where()).read_text()
    write_0600(path, text, 0o644)  # a certificate is public
    console.print(f"wrote {path}: SHA-256 {colon_fingerprint(pem_fingerprint(pem))}", highlight=False)


@app.command("list")
@handle_errors
def list_(ctx: typer.Context, kind: str | None = typer.Option(None, "--kind")) -> None:
    """List identities (keys are never shown)."""
    settings = settings_from(ctx)
    with open_store(settings) as store:
        rows = store.list_identities(kind)
    table = Table()
    for col in ("identifier", "kind", "scopes", "disabled", "expires"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["identifier"],
            r["kind"],
            ", ".join(r["scopes"] or []),
            str(r["disabled"]),
            str(r["expires"] or "-"),
        )
    console.print(table)


@app.command("remove")
@handle_errors
def remove(ctx: typer.Context, identifier: str = typer.Argument(...)) -> None:
    """Remove an identity; its tokens stop working when they expire."""
    settings = settings_from(ctx)
    with open_store(settings) as store:
        try:
            store.remove_identity(identifier)
        except StateStoreError as exc:
            raise fail(str(exc)) from None
    console.print(f"removed {identifier}")


@app.command("add-scope")
@handle_errors
def add_scope(
    ctx: typer.Context,
    identifier: str = typer.Argument(..., help="the identity's name"),
    scope: list[str] = typer.Option(..., "--scope", help="scope to grant, e.g. org-campaign-* (repeatable)"),
) -> None:
    """Grant scopes to an identity; its current tokens stop working (it logs in again)."""
    settings = settings_from(ctx)
    with open_store(settings) as store:
        try:
            scopes = store.add_identity_scopes(identifier, scope)
        except StateStoreError as exc:
            raise fail(str(exc)) from None
    console.print(f"{identifier} scopes: {', '.join(scopes) or '(none)'}")


@app.command("list-scope")
@handle_errors
def list_scope(ctx: typer.Context, identifier: str = typer.Argument(..., help="the identity's name")) -> None:
    """Print an identity's scopes, one a line."""
    settings = settings_from(ctx)
    with open_store(settings) as store:
        try:
            scopes = store.get_identity(identifier)["scopes"] or []
        except StateStoreError as exc:
            raise fail(str(exc)) from None
    for s in scopes:
        console.print(s, highlight=False)


@app.command("remove-scope")
@handle_errors
def remove_scope(
    ctx: typer.Context,
    identifier: str = typer.Argument(..., help="the identity's name"),
    scope: list[str] = typer.Option(..., "--scope", help="scope to revoke (repeatable)"),
) -> None:
    """Revoke scopes from an identity; its current tokens stop working."""
    settings = settings_from(ctx)
    with open_store(settings) as store:
        try:
            before = store.get_identity(identifier)["scopes"] or []
            scopes = store.remove_identity_scopes(identifier, scope)
        except StateStoreError as exc:
            raise fail(str(exc)) from None
    absent = [s for s in scope if s not in before]
    if absent:
        console.print(f"[yellow]not held by {identifier}:[/] {', '.join(absent)}")
    console.print(f"{identifier} scopes: {', '.join(scopes) or '(none)'}")
