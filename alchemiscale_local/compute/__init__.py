"""Compute services: claim tasks from the compute API, run them in a child process, push results."""

from .service import ComputeService

__all__ = ["ComputeService"]
