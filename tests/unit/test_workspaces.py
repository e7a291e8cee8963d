"""Several workspaces (contract 12): the ``BRIDGE_WORKSPACES_FILE`` parser and its config."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.config import load, unknown_settings
from bridge.errors import ConfigError, InvalidCommand
from bridge.workspaces import Workspace, parse_workspaces, webhook_url

A_ACCESS, A_SIGNING = "access-key-of-org-a", "signing-key-of-ws-a"
B_ACCESS, B_SIGNING = "access-key-of-org-b", "signing-key-of-ws-b"
TWO = f"""
[[workspace]]
id = "ws-a"
organizationId = "org-a"
accessKey = "{A_ACCESS}"
signingKey = "{A_SIGNING}"

[[workspace]]
id = "ws-b"
organizationId = "org-b"
accessKey = "{B_ACCESS}"
signingKey = "{B_SIGNING}"
signingKeyPrevious = "signing-key-of-ws-b-old"
"""


def no_files(path: str) -> str:
    raise ValueError(f"cannot read {path!r}: no such file")


def parse(text: str, files: dict[str, str] | None = None) -> tuple[Workspace, ...]:
    def read(path: str) -> str:
        if files is not None and path in files:
            return files[path]
        return no_files(path)

    return parse_workspaces(tomllib.loads(text), read_secret=read)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return caught.value.problems


def test_two_workspaces_in_order_with_their_own_keys() -> None:
    a, b = parse(TWO)
    assert (a.id, a.organization_id, b.id, b.organization_id) == ("ws-a", "org-a", "ws-b", "org-b")
    assert a.access_key is not None
    assert a.access_key.reveal() == A_ACCESS
    assert a.signing_keys == (A_SIGNING,)
    assert b.signing_keys == (B_SIGNING, "signing-key-of-ws-b-old")
    assert A_ACCESS not in repr(a)
    assert B_SIGNING not in repr(b)


def test_keys_from_files() -> None:
    text = """
[[workspace]]
id = "ws-a"
organizationId = "org-a"
accessKeyFile = "a/access"
signingKeyFile = "a/signing"
signingKeyPreviousFile = "a/previous"
"""
    files = {"a/access": A_ACCESS, "a/signing": A_SIGNING, "a/previous": "previous-signing"}
    (a,) = parse(text, files)
    assert a.access_key is not None
    assert a.access_key.reveal() == A_ACCESS
    assert a.signing_keys == (A_SIGNING, "previous-signing")


def test_every_problem_is_named_by_table_and_field_at_once_without_a_key() -> None:
    text = """
[[workspace]]
id = "ws-a"
organizationId = "org-a"
accessKey = "k3y-ab"
signingKey = "signing-key-long-enough"
signingKeyFile = "also/a/file"

[[workspace]]
organizationId = "org-b"
signingKeyFile = "missing/file"
acessKey = "typo-in-the-field-name"

[[workspace]]
id = "ws-a"
organizationId = "org-a"
accessKey = "access-key-long-enough"
signingKey = "signing-key-long-enough"

[[workspace]]
id = "ws/d"
accessKey = 12345678
signingKey = "signing-key-long-enough"
"""
    problems = problems_of(text)
    expected = [
        "workspace #1 (id 'ws-a'): accessKey: too short for a secret",
        "workspace #1 (id 'ws-a'): signingKey: set signingKey or signingKeyFile, not both",
        "workspace #2: acessKey: unknown field; did you mean accessKey?",
        "workspace #2: id: required",
        "workspace #2: accessKey: required (accessKey or accessKeyFile)",
        "workspace #2: signingKeyFile: cannot read 'missing/file'",
        "workspace #3 (id 'ws-a'): id: already used by workspace #1",
        "workspace #4 (id 'ws/d'): id: must not contain '/'",
        "workspace #4 (id 'ws/d'): organizationId: required",
        "workspace #4 (id 'ws/d'): accessKey: must be a string",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected)
    text_of_all = "\n".join(problems)
    for secret in ("k3y-ab", "typo-in-the-field-name", "12345678", "signing-key-long-enough"):
        assert secret not in text_of_all.replace("'missing/file'", "")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no [[workspace]] table"),
        ('workspace = "ws-a"', "workspace: must be [[workspace]] tables"),
        ('other = 1\n[[workspace]]\nid = "x"', "unknown key 'other'"),
    ],
)
def test_a_file_without_workspace_tables_is_refused(text: str, problem: str) -> None:
    assert any(p.startswith(problem) for p in problems_of(text))


def test_webhook_url_appends_the_escaped_workspace_id() -> None:
    assert webhook_url("https://h/webhooks/bird", "ws-a") == "https://h/webhooks/bird/ws-a"
    assert webhook_url("https://h/webhooks/bird/", "a b") == "https://h/webhooks/bird/a%20b"


# --- the config -----------------------------------------------------------------------


def write(tmp_path: Path, text: str = TWO) -> str:
    path = tmp_path / "workspaces.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_file_sets_the_workspaces_of_the_config(tmp_path: Path) -> None:
    config = load({"BRIDGE_WORKSPACES_FILE": write(tmp_path)})
    assert [w.id for w in config.workspaces] == ["ws-a", "ws-b"]
    assert config.bird.workspaces_from_file
    with pytest.raises(ConfigError) as caught:
        config.require(["ingest", "commands"])
    # Keys come from the file; only the public URL is still missing.
    assert [p.split(":")[0] for p in caught.value.problems] == ["BRIDGE_WEBHOOK_PUBLIC_URL"]
    assert {A_ACCESS, A_SIGNING, B_ACCESS, B_SIGNING} <= set(config.secrets())


def test_key_files_are_relative_to_the_workspaces_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "access").write_text(A_ACCESS + "\n")
    (tmp_path / "keys" / "signing").write_text(A_SIGNING + "\n")
    text = '[[workspace]]\nid = "ws-a"\norganizationId = "org-a"\n'
    text += 'accessKeyFile = "keys/access"\nsigningKeyFile = "keys/signing"\n'
    (a,) = load({"BRIDGE_WORKSPACES_FILE": write(tmp_path, text)}).workspaces
    assert a.signing_keys == (A_SIGNING,)


def test_the_single_workspace_variables_describe_one_workspace() -> None:
    config = load(
        {
            "BRIDGE_BIRD_WORKSPACE_ID": "ws-1",
            "BRIDGE_BIRD_ORGANIZATION_ID": "org-1",
            "BRIDGE_BIRD_ACCESS_KEY": A_ACCESS,
            "BRIDGE_WEBHOOK_SIGNING_KEY": A_SIGNING,
        }
    )
    (only,) = config.workspaces
    assert (only.id, only.organization_id, only.signing_keys) == ("ws-1", "org-1", (A_SIGNING,))
    assert not config.bird.workspaces_from_file


def test_a_broken_file_and_other_problems_are_reported_together(tmp_path: Path) -> None:
    broken = TWO.replace(f'accessKey = "{B_ACCESS}"', 'accessKey = "k3y-ab"')
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "BRIDGE_WORKSPACES_FILE": write(tmp_path, broken),
                "BRIDGE_WEBHOOK_SIGNING_KEY": "a-signing-key-for-one",
                "BRIDGE_HTTP_PORT": "eighty",
            }
        )
    problems = caught.value.problems
    assert any(p.startswith("BRIDGE_HTTP_PORT") for p in problems)
    assert any(
        p.startswith("BRIDGE_WEBHOOK_SIGNING_KEY: not used with BRIDGE_WORKSPACES_FILE")
        for p in problems
    )
    assert any(
        p.startswith("BRIDGE_WORKSPACES_FILE (") and "workspace #2 (id 'ws-b'): accessKey" in p
        for p in problems
    )
    assert all("k3y-ab" not in p for p in problems)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[workspace]\n", "not valid TOML"),
        (None, "cannot read"),
    ],
)
def test_an_unreadable_file_names_the_variable(
    tmp_path: Path, text: str | None, problem: str
) -> None:
    path = write(tmp_path, text) if text is not None else str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as caught:
        load({"BRIDGE_WORKSPACES_FILE": path})
    (line,) = caught.value.problems
    assert line.startswith("BRIDGE_WORKSPACES_FILE (")
    assert problem in line


def test_the_default_workspace_must_be_one_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path)
    assert load({"BRIDGE_WORKSPACES_FILE": path, "BRIDGE_BIRD_WORKSPACE_ID": "ws-b"})
    with pytest.raises(ConfigError) as caught:
        load({"BRIDGE_WORKSPACES_FILE": path, "BRIDGE_BIRD_WORKSPACE_ID": "ws-z"})
    assert caught.value.problems == [
        "BRIDGE_BIRD_WORKSPACE_ID: 'ws-z' is not a workspace of BRIDGE_WORKSPACES_FILE"
    ]


def test_the_variable_is_a_known_setting(tmp_path: Path) -> None:
    environ: dict[str, Any] = {"BRIDGE_WORKSPACES_FILE": "x", "BRIDGE_WORKSPACE_FILE": "x"}
    warnings = unknown_settings(environ)
    assert warnings == [
        "BRIDGE_WORKSPACE_FILE is not a known setting; did you mean BRIDGE_WORKSPACES_FILE?"
    ]
    config_file = tmp_path / "bridge.toml"
    config_file.write_text(f'BRIDGE_WORKSPACES_FILE = "{write(tmp_path)}"\n')
    assert len(load({"BRIDGE_CONFIG_FILE": str(config_file)}).workspaces) == 2


# --- commands -------------------------------------------------------------------------


def test_a_command_for_a_workspace_not_served_is_refused_naming_workspace_id() -> None:
    from bridge.commands.parse import parse_command

    def command(**fields: str) -> bytes:
        return orjson.dumps({"commandId": "c-1", "action": "get", "connectorId": "x", **fields})

    served = frozenset({"ws-a", "ws-b"})
    got = parse_command(command(workspaceId="ws-b"), default_workspace_id=None, workspaces=served)
    assert got.workspace_id == "ws-b"
    with pytest.raises(InvalidCommand) as caught:
        parse_command(command(workspaceId="ws-z"), default_workspace_id=None, workspaces=served)
    assert (caught.value.field, caught.value.command_id) == ("workspaceId", "c-1")
    assert caught.value.reason == "workspaceId: 'ws-z' is not a workspace this bridge serves"
    # Without the file (workspaces=None) any workspace goes, as in v1.
    assert parse_command(command(workspaceId="ws-z"), default_workspace_id=None).workspace_id


def test_the_config_lists_the_workspaces_commands_may_name(tmp_path: Path) -> None:
    assert load({"BRIDGE_WORKSPACES_FILE": write(tmp_path)}).bird.workspace_ids == frozenset(
        {"ws-a", "ws-b"}
    )
    assert load({"BRIDGE_BIRD_WORKSPACE_ID": "ws-1"}).bird.workspace_ids is None
