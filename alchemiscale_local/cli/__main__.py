"""``python -m alchemiscale_local.cli`` (how `up --detach` re-runs itself in the background)."""

from . import main

main()
