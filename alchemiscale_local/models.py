"""Identifiers and wire models shared by the server, the clients and compute services.

Nothing here imports gufe: a gufe key is only ever handled as ``<Qualname>-<hex>``.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The one rule for scope parts (org, campaign, project), shared by the API, the state store
#: and the object store, whose paths are built from them: a letter, then letters, digits and
#: '_', at most SCOPE_PART_MAX characters in all.
SCOPE_PART_MAX = 64
SCOPE_PART_PATTERN = rf"[a-zA-Z][a-zA-Z0-9_]{{0,{SCOPE_PART_MAX - 1}}}"
#: The one rule for a gufe key ``<Qualname>-<token>`` (groups: qualname, token), used by the
#: models, the wire, the routes, the state store and the keyed-chain checks.
GUFE_KEY_PATTERN = r"([A-Za-z_][A-Za-z0-9_.]*)-([A-Za-z0-9]+)"
#: Anchored with \Z, not '$' (which also matches before a trailing newline: 'proj\n').
SCOPE_PART_RE = re.compile(rf"{SCOPE_PART_PATTERN}\Z")
GUFE_KEY_RE = re.compile(rf"{GUFE_KEY_PATTERN}\Z")


class InvalidIdentifier(ValueError):
    """A scope or key string that does not parse."""


class ScopePartTooLong(InvalidIdentifier):
    """A scope part longer than :data:`SCOPE_PART_MAX` (the object store's limit)."""


def check_scope_part(name: str, part: str) -> None:
    """InvalidIdentifier unless ``part`` follows the scope-part rule (``name``: org/campaign/project)."""
    if not isinstance(part, str):
        raise InvalidIdentifier(f"scope {name} must be a string")
    if len(part) > SCOPE_PART_MAX and SCOPE_PART_RE.match(part[:SCOPE_PART_MAX]):
        raise ScopePartTooLong(
            f"scope {name} {part[:20]!r}... is {len(part)} characters long; at most {SCOPE_PART_MAX} "
            "are allowed (the object store's limit for a path part)"
        )
    if not SCOPE_PART_RE.match(part):
        raise InvalidIdentifier(
            f"scope {name} {part!r} must start with a letter and contain only letters, digits and '_' "
            f"(at most {SCOPE_PART_MAX} characters)"
        )


class _SpecificFlag:
    """``scope.specific`` that is both a bool (this project's property) and callable (alchemiscale's method)."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def __bool__(self) -> bool:
        return self.value

    def __call__(self) -> bool:
        return self.value

    def __eq__(self, other: object) -> bool:
        return bool(self) == bool(other) if isinstance(other, (bool, _SpecificFlag)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return repr(self.value)


class Scope(BaseModel):
    """``org-campaign-project``; each part an identifier or ``*`` (wildcards only at the end).

    As alchemiscale's: ``Scope('org', 'campaign', 'project')`` positionally, ``'*'`` for a
    wildcard part, ordered by its string, ``to_dict()``/``from_dict()``.
    """

    model_config = ConfigDict(frozen=True)

    org: str | None = None
    campaign: str | None = None
    project: str | None = None

    def __init__(
        self, org: str | None = None, campaign: str | None = None, project: str | None = None
    ) -> None:
        super().__init__(org=org, campaign=campaign, project=project)

    @field_validator("org", "campaign", "project", mode="before")
    @classmethod
    def _star_is_wildcard(cls, v: Any) -> Any:
        return None if v == "*" else v

    def model_post_init(self, __context: Any) -> None:
        parts = (self.org, self.campaign, self.project)
        seen_wild = False
        for name, part in zip(("org", "campaign", "project"), parts, strict=False):
            if part is None:
                seen_wild = True
                continue
            if seen_wild:
                raise InvalidIdentifier(
                    f"scope {self}: wildcards may only appear at the end (got a {name} after '*')"
                )
            check_scope_part(name, part)

    @classmethod
    def from_str(cls, text: str) -> Scope:
        if not isinstance(text, str):
            raise InvalidIdentifier("scope must be a string 'org-campaign-project'")
        parts = text.split("-")
        if len(parts) != 3:
            raise InvalidIdentifier(
                f"scope {text!r} must have exactly three parts 'org-campaign-project' (use '*' for any)"
            )
        values = [None if p == "*" else p for p in parts]
        for name, part in zip(("org", "campaign", "project"), values, strict=True):
            if part is not None:
                check_scope_part(name, part)  # here, so the error is not wrapped by pydantic
        return cls(org=values[0], campaign=values[1], project=values[2])

    def __str__(self) -> str:
        return "-".join(p if p is not None else "*" for p in (self.org, self.campaign, self.project))

    def to_tuple(self) -> tuple[str | None, str | None, str | None]:
        return (self.org, self.campaign, self.project)

    @property
    def specific(self) -> _SpecificFlag:
        """True when no part is a wildcard (usable as ``scope.specific`` or ``scope.specific()``)."""
        return _SpecificFlag(None not in self.to_tuple())

    def to_dict(self) -> dict[str, str | None]:
        return {"org": self.org, "campaign": self.campaign, "project": self.project}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scope:
        return cls(d.get("org"), d.get("campaign"), d.get("project"))

    def __lt__(self, other: Scope) -> bool:
        return str(self) < str(other)

    def __le__(self, other: Scope) -> bool:
        return str(self) <= str(other)

    def __gt__(self, other: Scope) -> bool:
        return str(self) > str(other)

    def __ge__(self, other: Scope) -> bool:
        return str(self) >= str(other)

    def is_superset(self, other: Scope) -> bool:
        """True when every key in ``other`` is also in this scope."""
        for mine, theirs in zip(self.to_tuple(), other.to_tuple(), strict=False):
            if mine is None:
                continue
            if mine != theirs:
                return False
        return True

    def to_path_parts(self) -> tuple[str, str, str]:
        if not self.specific:
            raise InvalidIdentifier(f"scope {self} is not specific")
        return (self.org, self.campaign, self.project)  # type: ignore[return-value]


class ScopedKey(BaseModel):
    """``<gufe key>-<org>-<campaign>-<project>``, the identifier every API speaks."""

    model_config = ConfigDict(frozen=True)

    gufe_key: str
    org: str
    campaign: str
    project: str

    def model_post_init(self, __context: Any) -> None:
        if not GUFE_KEY_RE.match(self.gufe_key):
            raise InvalidIdentifier(f"gufe key {self.gufe_key!r} must look like '<Qualname>-<token>'")
        Scope(org=self.org, campaign=self.campaign, project=self.project)
        for part in (self.org, self.campaign, self.project):
            if part is None:
                raise InvalidIdentifier("a scoped key needs a specific scope")

    @classmethod
    def from_str(cls, text: str) -> ScopedKey:
        if not isinstance(text, str):
            raise InvalidIdentifier("scoped key must be a string")
        parts = text.split("-")
        if len(parts) != 5:
            raise InvalidIdentifier(
                f"scoped key {text!r} must be '<Qualname>-<token>-<org>-<campaign>-<project>'"
            )
        qualname, token, org, campaign, project = parts
        return cls(gufe_key=f"{qualname}-{token}", org=org, campaign=campaign, project=project)

    def __str__(self) -> str:
        return f"{self.gufe_key}-{self.org}-{self.campaign}-{self.project}"

    @property
    def qualname(self) -> str:
        return self.gufe_key.split("-", 1)[0]

    def to_dict(self) -> dict[str, str]:
        """``{gufe_key, org, campaign, project}``: alchemiscale's wire form of a key in a body."""
        return {
            "gufe_key": self.gufe_key,
            "org": self.org,
            "campaign": self.campaign,
            "project": self.project,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScopedKey:
        return cls(gufe_key=str(d["gufe_key"]), org=d["org"], campaign=d["campaign"], project=d["project"])

    @classmethod
    def coerce(cls, value: Any) -> ScopedKey:
        """A ScopedKey from a key, its string, or its ``to_dict()`` object (InvalidIdentifier if none)."""
        if isinstance(value, ScopedKey):
            return value
        if isinstance(value, str):
            return cls.from_str(value)
        if isinstance(value, dict):
            missing = {"gufe_key", "org", "campaign", "project"} - value.keys()
            if missing:
                raise InvalidIdentifier(f"scoped key object lacks {sorted(missing)}")
            if not all(isinstance(value[k], str) for k in ("gufe_key", "org", "campaign", "project")):
                raise InvalidIdentifier("scoped key object parts must be strings")
            return cls.from_dict(value)
        raise InvalidIdentifier(
            "a scoped key must be a string or a {gufe_key, org, campaign, project} object"
        )

    def __lt__(self, other: ScopedKey) -> bool:
        return str(self) < str(other)

    def __le__(self, other: ScopedKey) -> bool:
        return str(self) <= str(other)

    def __gt__(self, other: ScopedKey) -> bool:
        return str(self) > str(other)

    def __ge__(self, other: ScopedKey) -> bool:
        return str(self) >= str(other)

    @property
    def scope(self) -> Scope:
        return Scope(org=self.org, campaign=self.campaign, project=self.project)


class TaskStatus(str, Enum):
    waiting = "waiting"
    running = "running"
    complete = "complete"
    error = "error"
    invalid = "invalid"
    deleted = "deleted"


class NetworkState(str, Enum):
    active = "active"
    inactive = "inactive"
    invalid = "invalid"
    deleted = "deleted"


class IdentityKind(str, Enum):
    user = "user"
    compute = "compute"


class ComputeServiceRegistration(BaseModel):
    """What a compute service says about itself when it registers."""

    identifier: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:@-]+$")
    hostname: str = Field(min_length=1, max_length=255)
    pid: int = Field(ge=0)
    gpu: str | None = Field(None, max_length=100, description="the CUDA_VISIBLE_DEVICES value it was given")
    runtimes: list[str] = Field(default_factory=list)


class ResultRef(BaseModel):
    """Where a ProtocolDAGResult lives and how to check it."""

    location: str
    size: int
    sha256: str
    ok: bool
    creator: str | None = None
    created_at: str | None = None
    pdr_key: str | None = None
