"""Path validation and the key layout of the object store.

Every piece of a key is checked before it reaches a filesystem or bucket: no traversal
(``..``, ``.``), no absolute paths, no empty parts, no backslashes or NUL, a small charset
and bounded lengths. Violations raise :class:`InvalidPath` with the reason.
"""

from __future__ import annotations

import re

# The models' rules for scope parts and gufe keys (one definition each); a path component is
# also capped at MAX_COMPONENT bytes.
from alchemiscale_local.models import GUFE_KEY_RE, SCOPE_PART_RE, InvalidIdentifier, Scope, ScopedKey

from .errors import InvalidPath

RESULTS_ROOT = "protocoldagresult"
TASKFILES_ROOT = "taskfiles"
RESULT_NAME = "obj.json.zst"
#: Names starting with this are in-flight temp files / probes: never listed, never accepted as input.
TMP_PREFIX = ".objstore-tmp-"

MAX_COMPONENT = 255  # NAME_MAX on common filesystems
MAX_RELPATH = 900  # S3 keys are <= 1024 bytes, leave room for the root prefix and layout
MAX_DEPTH = 32

_COMPONENT_RE = re.compile(r"^[A-Za-z0-9._+=@,~-]+$")


def is_temp_name(name: str) -> bool:
    """True for the reserved names of in-flight writes and probes."""
    return name.startswith(TMP_PREFIX)


def validate_component(value: object, what: str = "path component") -> str:
    """One path segment: a non-empty name from a small charset, not ``.``/``..``."""
    if not isinstance(value, str):
        raise InvalidPath(f"{what} must be a string, got {type(value).__name__}")
    if value == "":
        raise InvalidPath(f"{what} is empty")
    if "\x00" in value:
        raise InvalidPath(f"{what} {value!r} contains NUL")
    if "\\" in value:
        raise InvalidPath(f"{what} {value!r} contains a backslash")
    if "/" in value:
        raise InvalidPath(f"{what} {value!r} contains '/'")
    if value in (".", ".."):
        raise InvalidPath(f"{what} {value!r} is not allowed (no traversal)")
    if len(value.encode()) > MAX_COMPONENT:
        raise InvalidPath(f"{what} is longer than {MAX_COMPONENT} bytes")
    if not _COMPONENT_RE.match(value):
        raise InvalidPath(f"{what} {value!r} has characters outside [A-Za-z0-9._+=@,~-]")
    if is_temp_name(value):
        raise InvalidPath(f"{what} {value!r} uses the reserved prefix {TMP_PREFIX!r}")
    return value


def validate_relpath(value: object, what: str = "relative path") -> str:
    """A ``/``-separated relative path whose every component is valid."""
    if not isinstance(value, str):
        raise InvalidPath(f"{what} must be a string, got {type(value).__name__}")
    if value == "":
        raise InvalidPath(f"{what} is empty")
    if "\x00" in value:
        raise InvalidPath(f"{what} {value!r} contains NUL")
    if "\\" in value:
        raise InvalidPath(f"{what} {value!r} contains a backslash")
    if value.startswith("/"):
        raise InvalidPath(f"{what} {value!r} is absolute")
    if len(value) > MAX_RELPATH:
        raise InvalidPath(f"{what} is longer than {MAX_RELPATH} characters")
    parts = value.split("/")
    if len(parts) > MAX_DEPTH:
        raise InvalidPath(f"{what} {value!r} is deeper than {MAX_DEPTH} levels")
    for part in parts:
        if part == "":
            raise InvalidPath(f"{what} {value!r} has an empty component")
        validate_component(part, f"component {part!r} of {what} {value!r}")
    return value


def validate_prefix(value: object) -> str:
    """A listing/deletion prefix: ``""`` (the root) or a relative path; one trailing ``/`` allowed."""
    if value == "":
        return ""
    if isinstance(value, str) and value.endswith("/") and len(value) > 1:
        value = value[:-1]
    return validate_relpath(value, "prefix")


def scope_parts(scope: Scope | str) -> tuple[str, str, str]:
    """``(org, campaign, project)`` of a specific scope."""
    if not isinstance(scope, (Scope, str)):
        raise InvalidPath(f"scope must be a Scope or 'org-campaign-project', got {type(scope).__name__}")
    try:
        if isinstance(scope, str):
            scope = Scope.from_str(scope)
        parts = scope.to_path_parts()
    except (InvalidIdentifier, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise InvalidPath(f"invalid scope: {exc}") from None
    for name, part in zip(("org", "campaign", "project"), parts, strict=False):
        if not SCOPE_PART_RE.match(part):
            raise InvalidPath(f"scope {name} {part!r} must match {SCOPE_PART_RE.pattern}")
    return parts


def validate_gufe_key(value: object, what: str = "key") -> str:
    """A gufe key ``<Qualname>-<token>``."""
    if not isinstance(value, str):
        raise InvalidPath(f"{what} must be a string, got {type(value).__name__}")
    validate_component(value, what)
    if not GUFE_KEY_RE.match(value):
        raise InvalidPath(f"{what} {value!r} must look like '<Qualname>-<token>'")
    return value


def _key_in_scope(key: str | ScopedKey, parts: tuple[str, str, str], what: str) -> str:
    if isinstance(key, ScopedKey):
        if (key.org, key.campaign, key.project) != parts:
            raise InvalidPath(f"{what} {key} is not in scope {'-'.join(parts)}")
        key = key.gufe_key
    return validate_gufe_key(key, what)


def result_location(
    scope: Scope | str, transformation_key: str | ScopedKey, pdr_key: str, *, ok: bool
) -> str:
    """``protocoldagresult/<org>/<campaign>/<project>/<tf key>/<results|failures>/<pdr key>/obj.json.zst``."""
    parts = scope_parts(scope)
    tf = _key_in_scope(transformation_key, parts, "transformation key")
    pdr = validate_gufe_key(pdr_key, "protocoldagresult key")
    return "/".join((RESULTS_ROOT, *parts, tf, "results" if ok else "failures", pdr, RESULT_NAME))


def validate_result_location(location: object) -> str:
    """A location returned by ``push_result`` (validated, must lie under ``protocoldagresult/``)."""
    loc = validate_relpath(location, "result location")
    if not loc.startswith(RESULTS_ROOT + "/"):
        raise InvalidPath(f"result location {loc!r} is not under {RESULTS_ROOT}/")
    return loc


def task_prefix(scope: Scope | str, task_key: str | ScopedKey) -> str:
    """``taskfiles/<org>/<campaign>/<project>/<task key>``."""
    parts = scope_parts(scope)
    return "/".join((TASKFILES_ROOT, *parts, _key_in_scope(task_key, parts, "task key")))


def task_file_location(scope: Scope | str, task_key: str | ScopedKey, relpath: str) -> str:
    """``taskfiles/<org>/<campaign>/<project>/<task key>/<relpath>``."""
    return f"{task_prefix(scope, task_key)}/{validate_relpath(relpath, 'task file path')}"
