"""``alchemiscale-local neo4j fetch|start|stop|status``."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from alchemiscale_local.settings import Settings

from ._common import console, fail, handle_errors, settings_from

app = typer.Typer(help="Run the Neo4j state store (jar | docker | external).", no_args_is_help=True)


def _human(n: int) -> str:
    return f"{n / 1024**2:.0f} MiB"


def _docker_answers() -> bool:
    from alchemiscale_local.launchers.neo4j.docker import DockerUnavailableError, connect_docker

    try:
        connect_docker()
    except DockerUnavailableError:
        return False
    return True


def _fetch(settings: Settings, force: bool = False) -> None:
    from alchemiscale_local.launchers.neo4j.fetch import cached_info, fetch_jars

    with console.status(f"Resolving Neo4j {settings.neo4j.version} jars with Maven (one-off, ~120 MB)..."):
        fetch_jars(settings, force=force)
    info = cached_info(settings) or {}
    console.print(
        f"[green]Fetched[/] {info.get('jars', '?')} jars ({_human(info.get('bytes', 0))}) "
        f"into {settings.jar_dir} in {info.get('seconds', '?')} s"
    )


@app.command("fetch")
@handle_errors
def fetch(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="resolve again even if cached"),
) -> None:
    """Resolve the Neo4j jars once into the cache (a no-op when they are there)."""
    from alchemiscale_local.launchers.neo4j.fetch import cached_info, jars_cached

    settings = settings_from(ctx)
    if jars_cached(settings) and not force:
        info = cached_info(settings) or {}
        console.print(
            f"Neo4j {settings.neo4j.version} jars already cached in {settings.jar_dir} "
            f"({info.get('jars', '?')} jars, {_human(info.get('bytes', 0))})."
        )
        return
    kind = settings.neo4j.launcher
    if not force and (kind in ("docker", "external") or (kind == "auto" and _docker_answers())):
        which = "a Docker engine answers" if kind == "auto" else f"the launcher is {kind!r}"
        console.print(f"Jars not needed: {which}. Use --force to fetch them anyway.")
        return
    _fetch(settings, force=force)


def _launchers(settings: Settings) -> list[Any]:
    """Launchers to control for stop/status: the configured one; for auto, jar and docker."""
    from alchemiscale_local.launchers.neo4j.auto import get_launcher
    from alchemiscale_local.launchers.neo4j.docker import DockerLauncher
    from alchemiscale_local.launchers.neo4j.jar import JarLauncher

    if settings.neo4j.launcher != "auto":
        return [get_launcher(settings)]
    found: list[Any] = [JarLauncher(settings)]
    if _docker_answers():
        found.append(DockerLauncher(settings))
    return found


@app.command("start")
@handle_errors
def start(
    ctx: typer.Context,
    port: int | None = typer.Option(None, "--port", help="Bolt port (0 = pick a free one)"),
    as_json: bool = typer.Option(False, "--json", help="print the connection as JSON"),
) -> None:
    """Start Neo4j (fetching the jars first if needed) and wait until Bolt answers."""
    from alchemiscale_local.launchers.neo4j.auto import get_launcher
    from alchemiscale_local.launchers.neo4j.fetch import find_mvn, jars_cached

    settings = settings_from(ctx, neo4j={"port": port})
    launcher = get_launcher(settings)
    if launcher.is_running():
        conn = launcher.wait_ready()
        action = "already running"
    else:
        if launcher.kind == "jar" and not jars_cached(settings) and find_mvn():
            _fetch(settings)
        began = time.monotonic()
        with console.status(f"Starting Neo4j ({launcher.kind} launcher)..."):
            conn = launcher.start()
        action = f"started in {time.monotonic() - began:.1f} s"
    from alchemiscale_local.launchers.neo4j.base import password_file

    info = {
        "launcher": launcher.kind,
        "uri": conn.uri,
        "user": conn.user,
        "database": conn.database,
        "password_file": str(password_file(settings)) if launcher.kind != "external" else None,
        "log": str(launcher.log_path) if launcher.log_path else None,
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    console.print(f"[green]Neo4j {action}[/] ({launcher.kind}): {conn.uri}")
    for key in ("user", "database", "password_file", "log"):
        if info[key]:
            console.print(f"  {key}: {info[key]}", highlight=False)


@app.command("stop")
@handle_errors
def stop(ctx: typer.Context) -> None:
    """Stop Neo4j (SIGTERM, then SIGKILL after 60 s); leaves no process behind."""
    settings = settings_from(ctx)
    stopped = False
    with console.status("Stopping Neo4j..."):
        for launcher in _launchers(settings):
            if launcher.kind == "external":
                raise fail("the external launcher does not manage Neo4j; nothing to stop.")
            stopped = launcher.stop() or stopped
    console.print("[green]Neo4j stopped.[/]" if stopped else "Neo4j was not running.")


@app.command("status")
@handle_errors
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Show whether Neo4j runs, where, and its log."""
    settings = settings_from(ctx)
    reports = [launcher.describe() for launcher in _launchers(settings)]
    running = [r for r in reports if r["running"]]
    report = running[0] if running else reports[0]
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    state_txt = "[green]running[/]" if report["running"] else "[yellow]not running[/]"
    console.print(f"Neo4j ({report['launcher']}): {state_txt}")
    for key in ("uri", "user", "database", "log"):
        if report.get(key) and (report["running"] or key == "log"):
            console.print(f"  {key}: {report[key]}", highlight=False)
