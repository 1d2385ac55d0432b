"""Typed client errors: every failed call raises a :class:`ClientError` subclass.

The server answers errors as JSON ``{"detail": ...}``; the detail becomes the message.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """An API call failed. ``status`` is the HTTP status (None when no response came)."""

    def __init__(self, status: int | None, detail: Any, *, method: str = "", url: str = "") -> None:
        self.status = status
        self.detail = detail
        self.method = method
        self.url = url
        super().__init__(self._message())

    def _message(self) -> str:
        where = f" ({self.method} {self.url})" if self.method else ""
        status = f"{self.status}: " if self.status is not None else ""
        return f"{status}{format_detail(self.detail)}{where}"


class ValidationError(ClientError):
    """The server rejected the request as malformed or invalid (400, 413, 415, 422)."""


class AuthError(ClientError):
    """Not authenticated (401) or not allowed (403), or no usable credentials."""


class NotFoundError(ClientError):
    """The key or route names nothing (404)."""


class ConflictError(ClientError):
    """The request contradicts the current state, e.g. a forbidden status change (409)."""


class ServerUnavailable(ClientError):
    """The server, or a service behind it, did not answer (connection error, 502, 503, 504)."""


class ResultIntegrityError(ClientError):
    """Downloaded result bytes do not match the checksum the server recorded."""


class CorruptResult(ClientError):
    """A stored result's bytes do not decode as a ProtocolDAGResult keyed chain."""


def format_detail(detail: Any) -> str:
    """A readable one-line form of FastAPI's ``detail`` (a string, a dict, or validation errors)."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):  # FastAPI/pydantic validation errors
        parts = []
        for err in detail:
            if isinstance(err, dict):
                loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {err.get('msg', err)}" if loc else str(err.get("msg", err)))
            else:
                parts.append(str(err))
        return "; ".join(parts)
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {v}" for k, v in detail.items())
    return str(detail)


def error_for_status(status: int | None) -> type[ClientError]:
    """The ClientError subclass for an HTTP status."""
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status in (400, 413, 415, 422):
        return ValidationError
    if status is None or status in (502, 503, 504):
        return ServerUnavailable
    return ClientError
