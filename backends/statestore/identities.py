"""User and compute identities with bcrypt-hashed keys, scopes, a disabled flag and expiry."""

from __future__ import annotations

import re
import secrets
from typing import Any

import bcrypt

from alchemiscale_local.models import IdentityKind

from .base import StoreBase, parse_scope
from .errors import Conflict, InvalidInput, NotFound

_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def hash_key(key: str) -> str:
    return bcrypt.hashpw(key.encode(), bcrypt.gensalt(rounds=10)).decode()


def check_key(key: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(key.encode(), hashed.encode())
    except ValueError:
        return False


class IdentitiesMixin(StoreBase):
    """Create, read, update and remove credentialed identities."""

    def add_identity(
        self,
        identifier: str,
        kind: str,
        *,
        key: str | None = None,
        scopes: list[str] | None = None,
        expires: float | None = None,
        replace: bool = False,
    ) -> str:
        """Create an identity; return its key (generated unless given). Conflict if it exists."""
        if not isinstance(identifier, str) or not _IDENTIFIER.match(identifier):
            raise InvalidInput(
                "identifier must start with a letter or digit and use letters, digits, '_', '.', '@', '-' (max 128)"
            )
        try:
            kind = IdentityKind(kind).value
        except ValueError:
            raise InvalidInput(f"identity kind must be one of {[k.value for k in IdentityKind]}") from None
        scope_strs = [str(parse_scope(s)) for s in (scopes or [])]
        key = key or secrets.token_urlsafe(32)
        if len(key) < 16:
            raise InvalidInput("an identity key must be at least 16 characters")
        props = {
            "identifier": identifier,
            "kind": kind,
            "hashed_key": hash_key(key),
            "scopes": scope_strs,
            "disabled": False,
            "expires": expires,
            "created": self._now(),
        }
        if replace:
            self._write(
                "MERGE (i:CredentialedIdentity {identifier: $id}) SET i = $props", id=identifier, props=props
            )
            return key
        rows = self._write(
            "MERGE (i:CredentialedIdentity {identifier: $id}) "
            "ON CREATE SET i = $props, i._new = true "
            "WITH i, coalesce(i._new, false) AS new REMOVE i._new RETURN new",
            id=identifier,
            props=props,
        )
        if not rows[0]["new"]:
            raise Conflict(f"identity {identifier} already exists")
        return key

    def get_identity(self, identifier: str) -> dict[str, Any]:
        rows = self._read(
            "MATCH (i:CredentialedIdentity {identifier: $id}) RETURN properties(i) AS p", id=identifier
        )
        if not rows:
            raise NotFound(f"no identity {identifier}")
        return rows[0]["p"]

    def list_identities(self, kind: str | None = None) -> list[dict[str, Any]]:
        rows = self._read(
            "MATCH (i:CredentialedIdentity) WHERE $kind IS NULL OR i.kind = $kind "
            "RETURN i.identifier AS identifier, i.kind AS kind, i.scopes AS scopes, "
            "i.disabled AS disabled, i.expires AS expires, i.created AS created ORDER BY identifier",
            kind=kind,
        )
        return rows

    def remove_identity(self, identifier: str) -> None:
        rows = self._write(
            "MATCH (i:CredentialedIdentity {identifier: $id}) DETACH DELETE i RETURN 1 AS one", id=identifier
        )
        if not rows:
            raise NotFound(f"no identity {identifier}")

    def set_identity_disabled(self, identifier: str, disabled: bool) -> None:
        rows = self._write(
            "MATCH (i:CredentialedIdentity {identifier: $id}) SET i.disabled = $d RETURN 1 AS one",
            id=identifier,
            d=bool(disabled),
        )
        if not rows:
            raise NotFound(f"no identity {identifier}")

    def set_identity_scopes(self, identifier: str, scopes: list[str]) -> None:
        scope_strs = [str(parse_scope(s)) for s in scopes]
        rows = self._write(
            "MATCH (i:CredentialedIdentity {identifier: $id}) SET i.scopes = $s RETURN 1 AS one",
            id=identifier,
            s=scope_strs,
        )
        if not rows:
            raise NotFound(f"no identity {identifier}")

    def add_identity_scopes(self, identifier: str, scopes: list[str]) -> list[str]:
        """Grant ``scopes`` (already held ones are kept once); the identity's scopes after.

        The scopes are part of the identity version tokens carry, so older tokens stop working.
        """
        scope_strs = [str(parse_scope(s)) for s in scopes]
        rows = self._write(
            "MATCH (i:CredentialedIdentity {identifier: $id}) "
            "SET i.scopes = coalesce(i.scopes, []) + "
            "[s IN $s WHERE NOT s IN coalesce(i.scopes, [])] RETURN i.scopes AS scopes",
            id=identifier,
            s=list(dict.fromkeys(scope_strs)),
        )
        if not rows:
            raise NotFound(f"no identity {identifier}")
        return list(rows[0]["scopes"])

    def remove_identity_scopes(self, identifier: str, scopes: list[str]) -> list[str]:
        """Revoke ``scopes`` (those not held are ignored); the identity's scopes after."""
        scope_strs = [str(parse_scope(s)) for s in scopes]
        rows = self._write(
            "MATCH (i:CredentialedIdentity {identifier: $id}) "
            "SET i.scopes = [s IN coalesce(i.scopes, []) WHERE NOT s IN $s] RETURN i.scopes AS scopes",
            id=identifier,
            s=scope_strs,
        )
        if not rows:
            raise NotFound(f"no identity {identifier}")
        return list(rows[0]["scopes"])

    def authenticate(self, identifier: str, key: str) -> dict[str, Any] | None:
        """The identity if the key matches and it is enabled and unexpired, else None."""
        try:
            ident = self.get_identity(identifier)
        except NotFound:
            # Same cost as a real check, so timing does not reveal which identifiers exist.
            check_key(key, "$2b$10$" + "a" * 53)
            return None
        if not check_key(key, ident["hashed_key"]):
            return None
        if ident.get("disabled"):
            return None
        expires = ident.get("expires")
        if expires is not None and expires < self._now():
            return None
        return ident
