"""``python -m alchemiscale_local.compute``: one compute service (the pool starts these).

Also usable by hand on another host: point ``--api-url`` at a deployment's API and
give it a compute identity's credentials file (``alchemiscale-local compute`` runs a
supervised pool of these for you).
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys
import time
from pathlib import Path

from alchemiscale_local.client.compute import ComputeClient
from alchemiscale_local.client.credentials import ENV_ID, ENV_KEY
from alchemiscale_local.client.errors import AuthError
from alchemiscale_local.secretfiles import write_private_json
from alchemiscale_local.settings import ComputeSettings, load_settings, settings_from_file

from .deathsig import die_with_parent
from .service import EXIT_REFUSED, ComputeService

LOG_BYTES = 10 << 20
LOG_BACKUPS = 3


def _logging(log_file: str | None, level: str = "INFO") -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: logging.Handler
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level, logging.INFO))
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _compute_settings(args: argparse.Namespace) -> tuple[ComputeSettings, Path]:
    """The service's settings and work root, from a deployment's settings or a pool's compute file."""
    if args.compute_settings:
        compute = ComputeSettings.model_validate_json(Path(args.compute_settings).read_text())
        if not args.work_dir:
            raise SystemExit("--compute-settings needs --work-dir")
        return compute, Path(args.work_dir)
    settings = settings_from_file(Path(args.settings_file)) if args.settings_file else load_settings()
    return settings.compute, Path(args.work_dir) if args.work_dir else settings.deployment_dir / "compute"


def _write_stats(path: str | None, service: ComputeService | None, started: float) -> None:
    if not path:
        return
    stats = service.stats if service is not None else None
    data = {
        "identifier": service.identifier if service is not None else None,
        "completed": stats.completed if stats else 0,
        "failed": stats.failed if stats else 0,
        "started_at": started,
        "first_task_at": stats.task_starts[0][1] if stats and stats.task_starts else None,
        "ended_at": time.time(),
    }
    write_private_json(Path(path), data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one alchemiscale-local compute service")
    parser.add_argument("--settings-file", help="resolved settings written by the deployment")
    parser.add_argument("--compute-settings", help="compute settings only (JSON), written by a compute pool")
    parser.add_argument("--work-dir", help="spool and task directories (default: the deployment's)")
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--credentials-file", required=True, help="JSON with a 'compute' {identifier, key}")
    parser.add_argument("--name", default=None)
    parser.add_argument("--log-file", default=None)
    parser.add_argument("--deadline", type=float, default=None, help="epoch seconds: claim nothing after")
    parser.add_argument("--stats-file", default=None, help="write completed/failed counts here at the end")
    parser.add_argument(
        "--stop-with-parent", action="store_true", help="SIGTERM (hand back, deregister) when the pool dies"
    )
    args = parser.parse_args(argv)
    if args.stop_with_parent:
        # A pool killed hard (SIGKILL, out of memory, Slurm's final kill) must not leave services
        # that keep claiming with nobody to stop them: they stop as on SIGTERM. (Delivered when
        # the thread that started this process ends: the pool's supervisor ends only with it.)
        die_with_parent(signal.SIGTERM)
    started = time.time()
    compute, workroot = _compute_settings(args)
    _logging(args.log_file, compute.loglevel)
    logger = logging.getLogger(__name__)
    if args.deadline is not None:
        left = args.deadline - started
        if left <= 0:
            logger.info("the pool's deadline has passed; not starting")
            _write_stats(args.stats_file, None, started)
            return 0
        compute = compute.model_copy(update={"max_time": min(compute.max_time or left, left)})
    # The identity is the credentials file's: an ALCHEMISCALE_LOCAL_ID/KEY meant for a user
    # client must not replace it. Its "tls" pin (an HTTPS deployment's certificate) applies
    # to both clients.
    for var in (ENV_ID, ENV_KEY):
        os.environ.pop(var, None)
    client = ComputeClient(args.api_url, credentials_file=args.credentials_file)
    beat = ComputeClient(args.api_url, credentials_file=args.credentials_file)
    service = ComputeService(client, compute, workroot, name=args.name, heartbeat_client=beat)
    service.install_signal_handlers()
    try:
        stats = service.run()
    except AuthError as exc:  # revoked, disabled, or not a compute identity: not retried
        logger.error("the API refuses this service's identity; stopping for good: %s", exc)
        return EXIT_REFUSED
    finally:
        _write_stats(args.stats_file, service, started)
    logger.info("stopped: %d completed, %d failed", stats.completed, stats.failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
