"""Typed errors of the state store; the API maps each to an HTTP status."""


class StateStoreError(Exception):
    """Base class of every state-store error."""


class NotFound(StateStoreError, LookupError):
    """A key names nothing in the store (404)."""


class InvalidInput(StateStoreError, ValueError):
    """Malformed input: a bad scope, chain, key or value (400/422)."""


class InvalidTransition(StateStoreError):
    """A task status change the state machine does not allow (409)."""


class Conflict(StateStoreError):
    """The request contradicts the current state, e.g. a result from a service without the claim (409)."""


class Unavailable(StateStoreError):
    """Neo4j cannot be reached (503)."""


class Forbidden(StateStoreError):
    """The caller may not act on this object, e.g. another identity's compute service (403)."""
