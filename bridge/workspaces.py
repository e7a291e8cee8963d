"""The Bird workspaces one bridge serves (contract 12): ``BRIDGE_WORKSPACES_FILE``.

``parse_workspaces`` is pure: the decoded TOML in, frozen ``Workspace``s out, or one
``ConfigError`` naming every problem by table number and field (never a key's value).
``read_workspaces_file`` is the thin file-reading edge around it.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bridge.errors import ConfigError
from bridge.secret import SECRET_MIN_LENGTH, Secret

WORKSPACES_FILE = "BRIDGE_WORKSPACES_FILE"
# The same limit and characters as a command's workspaceId (bridge/commands/parse.py).
MAX_ID = 128

_SECRETS = ("accessKey", "signingKey", "signingKeyPrevious")
_FIELDS = frozenset({"id", "organizationId", *_SECRETS, *(f"{name}File" for name in _SECRETS)})


@dataclass(frozen=True, slots=True)
class Workspace:
    """One Bird workspace: its organization, the access key of that organization and the
    signing key (plus the previous one during a rotation) of its webhook subscriptions."""

    id: str
    organization_id: str | None
    access_key: Secret | None
    signing_key: Secret | None
    signing_key_previous: Secret | None = None

    @property
    def signing_keys(self) -> tuple[str, ...]:
        """The keys a webhook of this workspace may be signed with, current one first."""
        return tuple(
            key.reveal() for key in (self.signing_key, self.signing_key_previous) if key is not None
        )

    def secrets(self) -> list[str]:
        return [
            key.reveal()
            for key in (self.access_key, self.signing_key, self.signing_key_previous)
            if key is not None
        ]


def webhook_url(public_url: str, workspace_id: str) -> str:
    """The URL Bird posts a workspace's webhooks to, and signs: the public webhook URL plus
    ``/<workspaceId>`` (escaped, so an id cannot change the path)."""
    return f"{public_url.rstrip('/')}/{quote(workspace_id, safe='')}"


def _id_problem(value: object) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    if len(value) > MAX_ID:
        return f"must be at most {MAX_ID} characters"
    if any(ch in value for ch in "/?#") or not value.isprintable():
        return "must not contain '/', '?', '#' or control characters"
    return None


def _secret(
    table: Mapping[str, Any],
    name: str,
    *,
    required: bool,
    read_secret: Callable[[str], str],
    problem: Callable[[str, str], None],
) -> Secret | None:
    """``name`` given inline or as ``<name>File`` (a path), exactly one of them."""
    inline, path = table.get(name), table.get(f"{name}File")
    if inline is not None and path is not None:
        problem(name, f"set {name} or {name}File, not both")
        return None
    if inline is None and path is None:
        if required:
            problem(name, f"required ({name} or {name}File)")
        return None
    if path is not None:
        if not isinstance(path, str) or not path:
            problem(f"{name}File", "must be a file path")
            return None
        try:
            value = read_secret(path)
        except ValueError as exc:
            problem(f"{name}File", str(exc))
            return None
        where = f"{name}File"
    else:
        if not isinstance(inline, str):
            # Never echo the value: it is (meant to be) a secret.
            problem(name, "must be a string")
            return None
        value, where = inline, name
    if len(value) < SECRET_MIN_LENGTH:
        problem(where, f"too short for a secret: at least {SECRET_MIN_LENGTH} characters")
        return None
    return Secret(value)


def parse_workspaces(
    data: Mapping[str, Any], *, read_secret: Callable[[str], str]
) -> tuple[Workspace, ...]:
    """The ``[[workspace]]`` tables of a decoded workspaces file, in order.

    ``read_secret(path)`` returns the text of an ``*File`` path or raises ``ValueError``
    saying why not. Every problem is collected first; then one ``ConfigError`` names
    each as ``workspace #N (id 'x'): field: reason``."""
    problems: list[str] = []
    problems.extend(
        f"unknown key {key!r} (the file holds [[workspace]] tables)"
        for key in data
        if key != "workspace"
    )
    tables = data.get("workspace")
    if tables is None:
        problems.append("no [[workspace]] table")
        raise ConfigError(problems)
    if not isinstance(tables, list) or not tables:
        problems.append("workspace: must be [[workspace]] tables")
        raise ConfigError(problems)
    workspaces: list[Workspace] = []
    first_seen: dict[str, int] = {}
    for number, table in enumerate(tables, start=1):
        if not isinstance(table, dict):
            problems.append(f"workspace #{number}: must be a table")
            continue
        raw_id = table.get("id")
        label = f"workspace #{number}" + (f" (id {raw_id!r})" if isinstance(raw_id, str) else "")
        found: list[str] = []

        def problem(name: str, reason: str, found: list[str] = found, label: str = label) -> None:
            found.append(f"{label}: {name}: {reason}")

        for key in table:
            if key not in _FIELDS:
                close = difflib.get_close_matches(key, _FIELDS, n=1, cutoff=0.7)
                problem(key, "unknown field" + (f"; did you mean {close[0]}?" if close else ""))
        workspace_id = raw_id if isinstance(raw_id, str) else ""
        id_problem = _id_problem(raw_id) if raw_id is not None else "required"
        if id_problem:
            problem("id", id_problem)
        elif workspace_id in first_seen:
            problem("id", f"already used by workspace #{first_seen[workspace_id]}")
        else:
            first_seen[workspace_id] = number
        organization = table.get("organizationId")
        if organization is None:
            problem("organizationId", "required")
        elif _id_problem(organization):
            problem("organizationId", str(_id_problem(organization)))
        keys = {
            name: _secret(
                table,
                name,
                required=name != "signingKeyPrevious",
                read_secret=read_secret,
                problem=problem,
            )
            for name in _SECRETS
        }
        problems.extend(found)
        if not found:
            workspaces.append(
                Workspace(
                    id=workspace_id,
                    organization_id=organization,
                    access_key=keys["accessKey"],
                    signing_key=keys["signingKey"],
                    signing_key_previous=keys["signingKeyPrevious"],
                )
            )
    if problems:
        raise ConfigError(problems)
    return tuple(workspaces)


def read_workspaces_file(path: str | Path) -> tuple[Workspace, ...]:
    """The workspaces of the TOML file at ``path``; ``*File`` paths in it are relative to
    the file's folder. Every problem is one line starting with ``BRIDGE_WORKSPACES_FILE``."""
    where = f"{WORKSPACES_FILE} ({path})"
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read: {exc.strerror}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{where}: not valid TOML: {exc}"]) from None
    folder = Path(path).parent

    def read_secret(name: str) -> str:
        try:
            return (folder / name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ValueError(f"cannot read {name!r}: {reason}") from None

    try:
        return parse_workspaces(data, read_secret=read_secret)
    except ConfigError as exc:
        raise ConfigError([f"{where}: {problem}" for problem in exc.problems]) from None
