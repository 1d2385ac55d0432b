"""``alchemiscale-local compute``: a supervised pool of compute services on this host for a
deployment elsewhere, reached by URL with a compute identity's credentials file.

No Neo4j and no deployment run here: the services talk only to the API. The pool ends
when its services end by themselves (``--max-tasks``), at ``--max-time`` (what they hold
goes back to waiting), or on SIGTERM/SIGINT (the same), so a batch job ends cleanly.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import typer
from rich.markup import escape
from rich.table import Table

from ._common import EXIT_USAGE, console, err_console, fail, handle_errors, settings_from

CREDENTIALS_HINT = "write one with `alchemiscale-local identity add --kind compute --export FILE`"
#: seconds the services get to hand their tasks back after a stop, before they are killed
DEFAULT_STOP_TIMEOUT_S = 60.0
EMPTY = '""'


@dataclass(frozen=True)
class ComputeIdentity:
    """What a compute credentials file names: the API and the identity (its key stays in the file)."""

    path: Path
    api_url: str
    identifier: str
    pinned: bool  # the file pins the server's TLS certificate


def read_credentials(path: Path, api_url: str | None) -> ComputeIdentity:
    """The credentials file's compute identity; ``typer.Exit`` with a clear message if unusable."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise fail(
            f"compute credentials file {path} does not exist; {CREDENTIALS_HINT}", EXIT_USAGE
        ) from None
    except OSError as exc:
        raise fail(f"cannot read compute credentials file {path}: {exc.strerror}", EXIT_USAGE) from None
    except ValueError as exc:
        raise fail(f"compute credentials file {path} is not valid JSON ({exc})", EXIT_USAGE) from None
    section = data.get("compute") if isinstance(data, dict) else None
    if not isinstance(section, dict) or not section.get("identifier") or not section.get("key"):
        raise fail(
            f'{path} holds no compute identity ({{"compute": {{"identifier": ..., "key": ...}}}}); '
            + CREDENTIALS_HINT,
            EXIT_USAGE,
        )
    url = api_url or data.get("api_url")
    if not url:
        raise fail(f"{path} names no api_url; pass --api-url", EXIT_USAGE)
    check_url(str(url))
    if path.stat().st_mode & 0o077:
        err_console.print(
            f"[yellow]Warning:[/] {escape(str(path))} holds a secret key and is readable by others; "
            f"`chmod 600 {escape(str(path))}`",
            soft_wrap=True,
        )
    return ComputeIdentity(path, str(url).rstrip("/"), str(section["identifier"]), bool(data.get("tls")))


def check_url(url: str) -> None:
    """Refuse anything but ``http(s)://host[:port][/path]``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise fail(f"API URL {url!r} is not valid: {exc}", EXIT_USAGE) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise fail(f"API URL {url!r} is not an http(s) URL like https://host:port", EXIT_USAGE)


def preflight(ident: ComputeIdentity) -> list[str]:
    """Log in once as the identity; its scopes. One clear message if the API is away or says no."""
    from alchemiscale_local.client.compute import ComputeClient
    from alchemiscale_local.client.errors import AuthError, ClientError, ServerUnavailable

    try:
        with ComputeClient(
            ident.api_url, credentials_file=ident.path, max_retries=1, connect_timeout=10, timeout=30
        ) as client:
            token = client._request(
                "POST",
                "/token",
                json_body={"identifier": client.identifier, "key": client.credentials.key},
                auth=False,
            ).json()
            if token.get("kind") not in (None, "compute"):
                raise fail(
                    f"{ident.identifier} is a {token.get('kind')} identity, not a compute one; "
                    + CREDENTIALS_HINT
                )
            return [str(s) for s in client.get_scopes()]
    except AuthError as exc:
        why = "refused" if exc.status in (401, 403) else "could not use"
        raise fail(f"the API at {ident.api_url} {why} compute identity {ident.identifier}: {exc}") from None
    except ServerUnavailable as exc:
        # No answer at all: the client's message names the URL; else the server's 5xx says why.
        raise fail(
            str(exc.detail) if exc.status is None else f"the API at {ident.api_url} is unavailable: {exc}"
        ) from None
    except ClientError as exc:  # e.g. the server's certificate is not the one the file pins
        if exc.status is None:
            raise fail(f"refused to use the API at {ident.api_url}: {exc}") from None
        raise fail(f"the API at {ident.api_url} answered: {exc}") from None


def name_prefix(name: str | None) -> str:
    """``--name`` (default: this host's name) plus the Slurm job and array task, when set."""
    parts = [name or socket.gethostname().split(".")[0]]
    if os.environ.get("SLURM_JOB_ID"):
        parts.append(f"j{os.environ['SLURM_JOB_ID']}")
    if os.environ.get("SLURM_ARRAY_TASK_ID"):
        parts.append(f"a{os.environ['SLURM_ARRAY_TASK_ID']}")
    prefix = "-".join(parts)
    if not all(c.isalnum() or c in "_.@-" for c in prefix):
        raise fail(f"--name {name!r}: use letters, digits and _ . @ - only", EXIT_USAGE)
    return prefix


def visible_devices() -> str | None:
    """CUDA_VISIBLE_DEVICES to plan within. In a Slurm job without it the job was given no GPU:
    the node's GPUs that nvidia-smi lists belong to other jobs."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None and os.environ.get("SLURM_JOB_ID"):
        return ""
    return visible


def _lock(work_dir: Path, prefix: str) -> IO[str]:
    """One pool per name and work dir: their spools and logs would mix."""
    from alchemiscale_local.secretfiles import private_dir

    private_dir(work_dir)
    fh = open(work_dir / f"{prefix}.lock", "a+")  # noqa: SIM115 (held for the pool's life)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise fail(
            f"a compute pool named {prefix!r} already runs with work dir {work_dir} (pid {holder}); "
            "use another --name or --work-dir",
            EXIT_USAGE,
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def _slurm_argv(params: dict[str, Any]) -> list[str]:
    """This command's own arguments, without the ``--slurm-array`` ones, with paths made absolute."""
    argv = ["--credentials", str(Path(params["credentials"]).absolute())]
    for key, flag in (
        ("api_url", "--api-url"),
        ("gpus", "--gpus"),
        ("per_gpu", "--per-gpu"),
        ("cpu_services", "--cpu-services"),
        ("max_tasks", "--max-tasks"),
        ("max_time", "--max-time"),
        ("name", "--name"),
        ("stop_timeout", "--stop-timeout"),
    ):
        if params.get(key) is not None and not (
            key == "stop_timeout" and params[key] == DEFAULT_STOP_TIMEOUT_S
        ):
            argv += [flag, str(params[key])]
    if params.get("work_dir") is not None:
        argv += ["--work-dir", str(Path(params["work_dir"]).absolute())]
    for value in params.get("scope") or []:
        argv += ["--scope", value]
    for value in params.get("protocol") or []:
        argv += ["--protocol", value]
    if params.get("finish_running"):
        argv.append("--finish-running")
    return argv


def _submit_array(n: int, argv: list[str], template: Path | None, extra: list[str]) -> str:
    """Submit through ``cli/slurm.py`` (imported only here: most hosts have no Slurm)."""
    import importlib

    try:
        slurm = importlib.import_module("alchemiscale_local.cli.slurm")
    except ImportError as exc:
        raise fail(f"Slurm submission is not available in this installation ({exc})") from None
    slurm_error = getattr(slurm, "SlurmError", RuntimeError)
    try:
        return str(slurm.submit_array(n, argv, template=template, extra=extra or None))
    except (slurm_error, OSError, RuntimeError) as exc:
        raise fail(f"could not submit the job array: {exc}") from None


def _start_line(ident: ComputeIdentity, scopes: list[str], pool: Any, prefix: str, limits: str) -> str:
    tls = (
        " (TLS, pinned certificate)"
        if ident.pinned
        else (" (TLS)" if ident.api_url.startswith("https") else "")
    )
    # A CPU service gets CUDA_VISIBLE_DEVICES="" (no GPU visible), shown as such.
    services = ", ".join(f"{r.name} [CUDA_VISIBLE_DEVICES={r.spec.gpu or EMPTY}]" for r in pool.runs())
    return (
        f"[bold]compute[/] {escape(prefix)} -> {escape(ident.api_url)}{tls} as {escape(ident.identifier)} "
        f"(scopes {escape(', '.join(scopes) or 'none')})\n"
        f"[bold]services[/] {len(pool.specs)}: {escape(services)}\n"
        f"[bold]limits[/] {escape(limits)}; work dir {escape(str(pool.work_dir))}, logs {escape(str(pool.log_dir))}"
    )


def _end_table(rows: list[dict[str, Any]], started: float) -> Table:
    table = Table(title="compute services", expand=False)
    for col in ("service", "CUDA_VISIBLE_DEVICES", "completed", "failed", "restarts", "exit"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["name"],
            row["gpu"] or "-",
            str(row["completed"]),
            str(row["failed"]),
            str(row["restarts"]),
            "-" if row["returncode"] is None else str(row["returncode"]),
        )
    firsts = [r["first_task_at"] for r in rows if r["first_task_at"] is not None]
    table.caption = (
        f"{sum(r['completed'] for r in rows)} completed, {sum(r['failed'] for r in rows)} failed "
        f"in {time.time() - started:.1f} s"
        + (
            f"; first task started {min(firsts) - started:.1f} s after start"
            if firsts
            else "; no task claimed"
        )
    )
    return table


def register(app: typer.Typer) -> None:
    """Add ``compute`` to the root app."""
    app.command("compute")(compute)


@handle_errors
def compute(
    ctx: typer.Context,
    credentials: Path = typer.Option(
        ..., "--credentials", "-c", help="compute credentials file (`identity add --kind compute --export`)"
    ),
    api_url: str | None = typer.Option(None, "--api-url", help="the API's URL (default: the file's)"),
    gpus: str | None = typer.Option(None, "--gpus", help="'auto', 'none' or device numbers '0,1'"),
    per_gpu: int | None = typer.Option(None, "--per-gpu", min=1, help="services per GPU"),
    cpu_services: int | None = typer.Option(None, "--cpu-services", min=0, help="CPU-only services"),
    scope: list[str] | None = typer.Option(None, "--scope", help="claim only from this scope (repeatable)"),
    protocol: list[str] | None = typer.Option(
        None, "--protocol", help="claim only this protocol (repeatable)"
    ),
    max_tasks: int | None = typer.Option(None, "--max-tasks", min=1, help="per service, then it ends"),
    max_time: float | None = typer.Option(
        None, "--max-time", min=1, help="seconds; then claim nothing new and hand running tasks back"
    ),
    finish_running: bool = typer.Option(
        False, "--finish-running", help="at --max-time let running tasks finish instead of handing them back"
    ),
    work_dir: Path | None = typer.Option(
        None, "--work-dir", help="spool, task shared/scratch, logs (node-local disk is best)"
    ),
    name: str | None = typer.Option(None, "--name", help="service name prefix (default: host name)"),
    stop_timeout: float = typer.Option(
        DEFAULT_STOP_TIMEOUT_S, "--stop-timeout", min=1, help="seconds to hand tasks back after a stop"
    ),
    slurm_array: int | None = typer.Option(
        None, "--slurm-array", min=1, help="submit this command as a Slurm job array of N tasks and exit"
    ),
    sbatch_arg: list[str] | None = typer.Option(
        None, "--sbatch-arg", help="with --slurm-array: an sbatch option, e.g. --sbatch-arg=--gres=gpu:4"
    ),
    slurm_template: Path | None = typer.Option(
        None, "--slurm-template", help="with --slurm-array: your own batch-script template (Jinja2)"
    ),
) -> None:
    """Run compute services on this host for a deployment elsewhere (by URL).

    On the deployment's host: `alchemiscale-local identity add gpu-box --kind compute --export
    gpu-box.json`; copy the file here, then e.g. `alchemiscale-local compute --credentials
    gpu-box.json --gpus auto --max-time 14400`. Ctrl-C or SIGTERM hands running tasks back.
    """
    from alchemiscale_local.compute.service import EXIT_REFUSED
    from alchemiscale_local.launchers.compute_pool import ComputePool, plan_services
    from alchemiscale_local.models import Scope
    from alchemiscale_local.secretfiles import write_private_json

    if slurm_array is None and (sbatch_arg or slurm_template):
        raise fail("--sbatch-arg and --slurm-template go with --slurm-array", EXIT_USAGE)
    ident = read_credentials(credentials, api_url)
    for text in scope or []:
        try:
            Scope.from_str(text)
        except ValueError as exc:
            raise fail(f"--scope {text!r}: {exc}", EXIT_USAGE) from None
    if slurm_array is not None:
        job = _submit_array(slurm_array, _slurm_argv(ctx.params), slurm_template, sbatch_arg or [])
        console.print(f"submitted Slurm job array {job} ({slurm_array} tasks)")
        return

    # The identity is the file's: ALCHEMISCALE_LOCAL_ID/KEY (a user client's) must not replace it.
    from alchemiscale_local.client.credentials import ENV_ID, ENV_KEY

    for var in (ENV_ID, ENV_KEY):
        os.environ.pop(var, None)
    scopes = preflight(ident)

    base = settings_from(ctx)
    overrides = {
        "gpus": gpus,
        "per_gpu": per_gpu,
        "cpu_services": cpu_services,
        "scopes": scope or None,
        "protocols": protocol or None,
        "max_tasks": max_tasks,
        "max_time": max_time,
    }
    settings = base.compute.model_validate(
        {**base.compute.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    )
    try:
        specs = plan_services(
            settings.gpus,
            settings.per_gpu,
            settings.cpu_services,
            visible=visible_devices(),
        )
    except ValueError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    if not specs:
        raise fail("no compute service to run (no GPU chosen and --cpu-services 0)", EXIT_USAGE)

    prefix = name_prefix(name)
    work = (work_dir or base.data_dir / "compute").absolute()
    lock = _lock(work, prefix)
    started = time.time()
    deadline = started + max_time if max_time else None
    state_file = work / f"{prefix}.pool.json"
    pool: ComputePool

    def write_state() -> None:
        write_private_json(
            state_file,
            {
                "owner_pid": os.getpid(),
                "api_url": ident.api_url,
                "services": [
                    {"name": r.name, "gpu": r.spec.gpu, "pid": r.record.pid if r.record else None}
                    for r in pool.runs()
                ],
            },
        )

    pool = ComputePool(
        specs,
        api_url=ident.api_url,
        credentials_file=ident.path.absolute(),
        compute=settings,
        log_dir=work / "logs",
        work_dir=work,
        name_prefix=prefix,
        restart_finished=False,
        deadline=deadline,
        on_change=write_state,
    )
    received: list[str] = []
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in handlers:
        signal.signal(sig, lambda signum, _frame: received.append(signal.Signals(signum).name))
    limits = (f"max {settings.max_tasks} task(s) per service" if settings.max_tasks else "no task limit") + (
        f", max-time {max_time:g} s ({'running tasks finish' if finish_running else 'then hand back'})"
        if max_time
        else ""
    )
    try:
        pool.start()
        write_state()
        console.print(_start_line(ident, scopes, pool, prefix, limits), soft_wrap=True, highlight=False)
        reason = ""
        while not reason:
            ended = pool.done.wait(0.5)
            # A signal first: scancel signals the services too, which then end "by themselves".
            if received:
                reason = f"{received[0]}: handing running tasks back"
            elif ended:
                reason = "every service ended by itself"
            elif deadline is not None and time.time() >= deadline and not finish_running:
                reason = "max-time reached: handing running tasks back"
        console.print(f"stopping ({reason})", highlight=False)
        pool.stop(timeout=stop_timeout)
    finally:
        if not pool.done.is_set():  # an error while starting: take down what started
            pool.stop(timeout=stop_timeout)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        state_file.unlink(missing_ok=True)
        lock.close()
    rows = pool.summary()
    console.print(_end_table(rows, started))
    refused = [r["name"] for r in rows if r["returncode"] == EXIT_REFUSED]
    if refused:
        raise fail(
            f"the API at {ident.api_url} refused identity {ident.identifier} while running "
            f"({', '.join(refused)}): was it removed or disabled? See {pool.log_dir}"
        )
