"""``alchemiscale-local up|down|status|logs``: the whole deployment on this machine."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from alchemiscale_local.settings import Settings

from ._common import console, err_console, fail, handle_errors, settings_from
from .task_log import show_task_log


def _compute_overrides(
    gpus: str | None,
    per_gpu: int | None,
    cpu_services: int | None,
    api_port: int | None,
    network: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    compute = {
        k: v
        for k, v in {"gpus": gpus, "per_gpu": per_gpu, "cpu_services": cpu_services}.items()
        if v is not None
    }
    if compute:
        out["compute"] = compute
    api = {"port": api_port, **(network or {})}
    api = {k: v for k, v in api.items() if v is not None}
    if api:
        out["api"] = api
    return out


def _network_overrides(
    bind: str | None, insecure_http: bool, tls_cert: Path | None, tls_key: Path | None
) -> dict[str, Any]:
    """``up``'s --bind/--insecure-http/--tls-cert/--tls-key as api settings (unset ones left out)."""
    return {
        "host": bind,
        "insecure_http": True if insecure_http else None,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
    }


def _insecure_warning(settings: Settings) -> str | None:
    """The red warning for plain HTTP off loopback, or None."""
    from alchemiscale_local.launchers.tls import is_loopback

    api = settings.api
    if not api.insecure_http or api.tls_cert or is_loopback(api.host):
        return None
    return (
        f"[bold red]WARNING: plain HTTP on {api.host} (--insecure-http).[/] Identity keys, tokens and "
        "results cross the network unencrypted; anyone on the path can read and reuse them. "
        "Drop --insecure-http to serve HTTPS."
    )


def _summary(settings: Settings, dep: Any) -> Panel:
    lines = [
        f"[bold]Neo4j[/]      {dep.neo4j.connection().uri} ({dep.neo4j.kind})",
        f"[bold]API[/]        {dep.api_url}"
        + (f"  (bound to {settings.api.host})" if settings.api.host not in dep.api_url else ""),
        *(
            [
                f"[bold]TLS[/]        SHA-256 {dep.tls.fingerprint}"
                + (" (self-signed)" if dep.tls.generated else f" ({dep.tls.cert_path})")
            ]
            if dep.tls
            else []
        ),
        f"[bold]Services[/]   {len(dep.pool.specs) if dep.pool else 0}: "
        + ", ".join(
            f"{s.name}" + (f" (GPU {s.gpu})" if s.gpu else "") for s in (dep.pool.specs if dep.pool else [])
        ),
        f"[bold]Objects[/]    {settings.objectstore.url}",
        f"[bold]Credentials[/] {settings.credentials_file}",
        f"[bold]Logs[/]       {settings.log_dir / settings.name}",
    ]
    # emoji=False: rich would turn a ":AB:" inside the fingerprint into an emoji
    body = Text.from_markup("\n".join(lines), emoji=False)
    return Panel(body, title=f"alchemiscale-local [cyan]{settings.name}[/] is up", expand=False)


def _status_table(store: Any, specs: dict[str, Any] | None = None) -> Table:
    table = Table(title="compute services", expand=False)
    for col in ("service", "GPU", "pid", "heartbeat age", "failures", "current task"):
        table.add_column(col)
    now = time.time()
    for svc in store.list_computeservices():
        table.add_row(
            svc["identifier"],
            svc["gpu"] or "-",
            str(svc["pid"]),
            f"{now - svc['heartbeat']:.0f} s" if svc.get("heartbeat") else "-",
            str(svc["failures"]),
            ", ".join(svc["tasks"]) or "idle",
        )
    counts = store.get_scope_status("*-*-*")
    table.caption = "tasks: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
    return table


def register(app: typer.Typer) -> None:
    """Add the deployment commands to the root app."""

    @app.command("up")
    @handle_errors
    def up(
        ctx: typer.Context,
        detach: bool = typer.Option(False, "--detach", "-d", help="start in the background and return"),
        gpus: str | None = typer.Option(None, "--gpus", help="'auto', 'none' or device numbers '0,1'"),
        per_gpu: int | None = typer.Option(None, "--per-gpu", min=1, help="services per GPU"),
        cpu_services: int | None = typer.Option(None, "--cpu-services", min=0, help="CPU-only services"),
        api_port: int | None = typer.Option(None, "--api-port", min=0, max=65535),
        bind: str | None = typer.Option(
            None, "--bind", help="API bind address (default 127.0.0.1); off loopback it serves HTTPS only"
        ),
        insecure_http: bool = typer.Option(
            False, "--insecure-http", help="serve plain HTTP off loopback (unsafe: keys cross in clear)"
        ),
        tls_cert: Path | None = typer.Option(
            None, "--tls-cert", help="PEM certificate to serve (default off loopback: a self-signed one)"
        ),
        tls_key: Path | None = typer.Option(None, "--tls-key", help="the certificate's PEM private key"),
        api_workers: int | None = typer.Option(
            None, "--api-workers", min=1, max=64, help="API worker processes (default: cores, at most 4)"
        ),
        live: bool = typer.Option(True, "--live/--no-live", help="live status while in the foreground"),
    ) -> None:
        """Start Neo4j, the API and the compute services (Ctrl-C stops everything)."""
        from alchemiscale_local.api.ui import dashboard_login_url
        from alchemiscale_local.launchers.ownership import ensure_not_running

        network = _network_overrides(bind, insecure_http, tls_cert, tls_key)
        overrides = _compute_overrides(gpus, per_gpu, cpu_services, api_port, network)
        if api_workers is not None:
            overrides.setdefault("api", {})["workers"] = api_workers
        settings = settings_from(ctx, **overrides)
        # Refuse a second `up` before touching anything (the running deployment is left alone).
        ensure_not_running(settings)
        from alchemiscale_local.deployment import LocalDeployment
        from alchemiscale_local.launchers.ownership import MARKER_ENV, marker

        # The owner is one of the deployment's processes too: `down` finds it even if its
        # runtime dir (lock, state file) was deleted under it.
        os.environ[MARKER_ENV] = marker(settings)

        warning = _insecure_warning(settings)
        if warning:
            err_console.print(warning, soft_wrap=True)
        if detach:
            _detach(settings)
            return
        dep = LocalDeployment(settings)
        stopping = {"flag": False, "starting": True}

        def _term(*_: object) -> None:
            stopping["flag"] = True
            if stopping["starting"]:  # `down` while starting: start() tears down what it started
                raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _term)
        with console.status("starting...") as status:
            dep.start(progress=lambda msg: status.update(msg))  # tears down what it started on failure
        stopping["starting"] = False
        try:
            console.print(_summary(settings, dep))
            assert dep.api_url and dep.credentials  # both set by a successful start()
            link = dashboard_login_url(dep.api_url, settings, dep.credentials["user"]["identifier"])
            console.print(f"[bold]Dashboard[/] {link}  (one-time link, 15 min)", soft_wrap=True)
            if live and console.is_terminal:
                with Live(_status_table(dep.store), console=console, refresh_per_second=1) as view:
                    while not stopping["flag"]:
                        time.sleep(1)
                        view.update(_status_table(dep.store))
            else:
                while not stopping["flag"]:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            with console.status("stopping..."):
                dep.stop()
            console.print("stopped.")

    @app.command("down")
    @handle_errors
    def down_cmd(ctx: typer.Context) -> None:
        """Stop a deployment (also one whose `up` process was killed)."""
        from alchemiscale_local.deployment import down

        settings = settings_from(ctx)
        with console.status("stopping..."):
            result = down(settings)
        if not result["state_file"] and not result["neo4j"]:
            console.print(f"deployment {settings.name!r} was not running.")
        else:
            console.print(f"deployment {settings.name!r} stopped.")

    @app.command("status")
    @handle_errors
    def status_cmd(ctx: typer.Context) -> None:
        """Neo4j, the API, each compute service with its GPU and task, and task counts."""
        from alchemiscale_local.backends.statestore import Neo4jStore
        from alchemiscale_local.deployment import read_state
        from alchemiscale_local.settings import settings_from_file

        settings = settings_from(ctx)
        state = read_state(settings)
        if state is None:
            raise fail(f"deployment {settings.name!r} is not running (no state file {settings.state_file}).")
        try:
            ok = (
                httpx.get(f"{state['api_url']}/ping", timeout=2, verify=_state_verify(state)).status_code
                == 200
            )
        except httpx.HTTPError:
            ok = False
        console.print(
            f"[bold]API[/]   {state['api_url']}  {'[green]up[/]' if ok else '[red]not answering[/]'}"
        )
        child = settings_from_file(Path(state["settings_file"]))
        neo = child.neo4j
        console.print(f"[bold]Neo4j[/] {neo.uri}")
        store = Neo4jStore.connect(
            neo.uri, neo.user, neo.password.get_secret_value() if neo.password else "", neo.database
        )
        try:
            store.check()
            console.print(_status_table(store))
        except Exception as exc:
            console.print(f"[red]Neo4j not answering:[/] {exc}")
        finally:
            store.close()

    @app.command("logs")
    @handle_errors
    def logs_cmd(
        ctx: typer.Context,
        component: str | None = typer.Argument(
            None, help="neo4j, api, or a compute service name; all if omitted"
        ),
        lines: int = typer.Option(40, "--lines", "-n", min=1),
        follow: bool = typer.Option(False, "--follow", "-f"),
        task: str | None = typer.Option(None, "--task", help="a task's protocol log (kept with its result)"),
    ) -> None:
        """Show the logs of a component, or with --task the protocol log of a task."""
        settings = settings_from(ctx)
        if task:
            return show_task_log(settings, task, lines)
        logs = _log_files(settings)
        if component:
            matches = {k: v for k, v in logs.items() if k == component or k == f"compute-{component}"}
            if not matches:
                raise fail(f"no log for {component!r}; known: {', '.join(sorted(logs)) or 'none'}")
            logs = matches
        if follow:
            os.execvp("tail", ["tail", "-n", str(lines), "-F", *map(str, logs.values())])
        for name, path in sorted(logs.items()):
            console.rule(f"{name}  ({path})")
            text = path.read_text(errors="replace").splitlines()[-lines:]
            console.print("\n".join(text), markup=False, highlight=False)


def _state_verify(state: dict[str, Any]) -> Any:
    """How `status` checks an HTTPS API: against the certificate the deployment recorded."""
    from alchemiscale_local.client.pinning import TLSPin

    pin = TLSPin.from_dict(state.get("tls"))
    return pin.ssl_context() if pin else True


def _log_files(settings: Settings) -> dict[str, Path]:
    found: dict[str, Path] = {}
    base = settings.log_dir / settings.name
    if base.is_dir():
        for path in sorted(base.glob("*.log")):
            if path.name.endswith(".stderr.log"):
                continue
            found[path.stem] = path
    neo = settings.log_dir / "neo4j.log"
    for candidate in (neo, settings.log_dir / settings.name / "neo4j.log"):
        if candidate.exists():
            found["neo4j"] = candidate
    return found


def _detach(settings: Settings) -> None:
    """Run `up` in a new session, wait until it is ready, and return."""
    from alchemiscale_local.deployment import read_state
    from alchemiscale_local.launchers.processes import python_env, python_module, spawn

    argv = python_module("alchemiscale_local.cli", *[a for a in sys.argv[1:] if a not in ("--detach", "-d")])
    argv += ["--no-live"]
    log_path = settings.log_dir / settings.name / "up.log"
    proc, _record = spawn("up", argv, log_path, env=python_env())
    deadline = time.monotonic() + settings.neo4j.start_timeout_s + 120
    with console.status("starting in the background..."):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise fail(
                    f"`up` exited with status {proc.returncode}; see {log_path}:\n"
                    + "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
                )
            state = read_state(settings)
            if state and state.get("owner_pid") == proc.pid and state.get("api_url"):
                console.print(
                    f"deployment {settings.name!r} is up: API {state['api_url']} "
                    f"(pid {proc.pid}; `alchemiscale-local status`, `alchemiscale-local down`)"
                )
                if (state.get("tls") or {}).get("sha256"):
                    from alchemiscale_local.client.pinning import colon_fingerprint

                    fingerprint = colon_fingerprint(state["tls"]["sha256"])
                    # emoji=False: rich would turn a ":AB:" inside the fingerprint into an emoji
                    console.print(f"TLS certificate SHA-256 {fingerprint}", emoji=False)
                return
            time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    raise fail(f"the deployment did not become ready in time; see {log_path}")
