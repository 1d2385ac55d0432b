"""``python -m alchemiscale_local.compute``: one compute service (the pool starts these).

Also usable by hand on another host: point ``--api-url`` at a deployment's API and
give it a compute identity's credentials file.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import sys
from pathlib import Path

from alchemiscale_local.client.compute import ComputeClient
from alchemiscale_local.settings import load_settings, settings_from_file

from .service import ComputeService

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one alchemiscale-local compute service")
    parser.add_argument("--settings-file", help="resolved settings written by the deployment")
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--credentials-file", required=True, help="JSON with a 'compute' {identifier, key}")
    parser.add_argument("--name", default=None)
    parser.add_argument("--log-file", default=None)
    args = parser.parse_args(argv)
    settings = settings_from_file(Path(args.settings_file)) if args.settings_file else load_settings()
    _logging(args.log_file, settings.compute.loglevel)
    creds = json.loads(Path(args.credentials_file).read_text())["compute"]
    # credentials_file: its "tls" pin (an HTTPS deployment's certificate) applies to both clients
    pinned = {"credentials_file": args.credentials_file}
    client = ComputeClient(args.api_url, creds["identifier"], creds["key"], **pinned)
    beat = ComputeClient(args.api_url, creds["identifier"], creds["key"], **pinned)
    service = ComputeService(
        client, settings.compute, settings.deployment_dir / "compute", name=args.name, heartbeat_client=beat
    )
    service.install_signal_handlers()
    stats = service.run()
    logging.getLogger(__name__).info("stopped: %d completed, %d failed", stats.completed, stats.failed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
