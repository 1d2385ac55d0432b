"""The user API and the compute API, served together by one uvicorn process."""

from .app import create_app

__all__ = ["create_app"]
