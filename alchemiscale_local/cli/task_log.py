"""``alchemiscale-local logs --task <sk>``: a task's protocol log, as kept in the object store."""

from __future__ import annotations

from alchemiscale_local.settings import Settings

from ._common import console, fail


def show_task_log(settings: Settings, task: str, lines: int, pdr_key: str | None = None) -> None:
    """Print the last ``lines`` lines of the task's protocol log (latest attempt, or ``pdr_key``)."""
    from alchemiscale_local.client import AlchemiscaleLocalClient
    from alchemiscale_local.client.errors import ClientError
    from alchemiscale_local.models import InvalidIdentifier, ScopedKey

    try:
        ScopedKey.from_str(task)
    except (InvalidIdentifier, ValueError) as exc:
        raise fail(
            f"--task needs a task ScopedKey like Task-<token>-<org>-<campaign>-<project>: {exc}", 2
        ) from None
    if not settings.credentials_file.exists():
        raise fail(
            f"no credentials for deployment {settings.name!r} ({settings.credentials_file}); is it up?"
        )
    try:
        client = AlchemiscaleLocalClient(credentials_file=settings.credentials_file, max_retries=1)
        try:
            text = client.get_task_log(task, pdr_key=pdr_key)
        finally:
            client.close()
    except ClientError as exc:
        raise fail(f"could not get the protocol log of {task}: {exc}") from None
    console.rule(f"protocol log of {task}")
    console.print("\n".join(text.splitlines()[-lines:]), markup=False, highlight=False, soft_wrap=True)


__all__ = ["show_task_log"]
