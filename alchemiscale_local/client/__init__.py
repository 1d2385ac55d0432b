"""Clients of an alchemiscale-local deployment.

from alchemiscale_local.client import AlchemiscaleLocalClient
client = AlchemiscaleLocalClient()          # credentials from env or the deployment's file
net = client.create_network(network, "org-campaign-project")
"""

from ._results import ResultFormat
from .compute import ComputeClient
from .credentials import Credentials, resolve_credentials
from .errors import (
    AuthError,
    ClientError,
    ConflictError,
    CorruptResult,
    NotFoundError,
    ResultIntegrityError,
    ServerUnavailable,
    ValidationError,
)
from .pinning import CertificateMismatchError
from .user import AlchemiscaleLocalClient

AlchemiscaleClient = AlchemiscaleLocalClient  # alchemiscale's name, for scripts written for it

__all__ = [
    "AlchemiscaleClient",
    "AlchemiscaleLocalClient",
    "AuthError",
    "CertificateMismatchError",
    "ClientError",
    "CorruptResult",
    "ComputeClient",
    "ConflictError",
    "Credentials",
    "NotFoundError",
    "ResultFormat",
    "ResultIntegrityError",
    "ServerUnavailable",
    "ValidationError",
    "resolve_credentials",
]
