"""Make a protocol process die with its compute service, however the service dies.

``die_with_parent()`` runs first thing in the child: on Linux it asks the kernel
(``prctl(PR_SET_PDEATHSIG)``) to SIGKILL this process when its parent exits, so a
SIGKILLed service cannot leave an orphan that keeps computing while another service
reruns the task. The parent's pid travels in ``PARENT_PID_ENV`` to close the race
where the parent dies before the prctl call.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_PID_ENV = "ALCHEMISCALE_LOCAL_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Arrange for ``sig`` on the parent's exit; exit now if it is already gone. False off Linux."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    expected = os.environ.get(PARENT_PID_ENV)
    if expected and expected.isdigit() and os.getppid() != int(expected):
        os._exit(1)  # the service died before the prctl: nobody waits for this result
    return True
