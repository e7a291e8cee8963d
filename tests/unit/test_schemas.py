"""docs/schemas/*.json and docs/asyncapi.yaml: generated from bridge/messages.py and
current, a valid AsyncAPI document for the AsyncAPI parser, and every JSON example of
docs/contract.md valid against its topic's schema."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest
import yaml  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.commands.ledger_state import Entry
from bridge.commands.results import error_body, result_value
from bridge.ingest.normalize import normalize_event
from bridge.schemas import asyncapi, rendered, topic_schemas
from bridge.state.fold import channel_event, state_record

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
VALIDATOR = ROOT / "tests" / "asyncapi"
REGENERATE = "run `.venv/bin/python -m bridge.schemas` and commit docs/"


@pytest.mark.parametrize("path", sorted(rendered(DOCS)), ids=lambda p: p.name)
def test_the_committed_documents_are_what_the_types_generate(path: Path) -> None:
    expected = rendered(DOCS)[path]
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: {REGENERATE}"
    assert path.read_bytes() == expected, f"{path.relative_to(ROOT)} is stale: {REGENERATE}"


def test_the_check_mode_names_a_stale_file(tmp_path: Path) -> None:
    from bridge.schemas import main

    assert main(["--docs", str(tmp_path)]) == 0
    assert main(["--docs", str(tmp_path), "--check"]) == 0
    (tmp_path / "schemas" / "result.json").write_text("{}\n")
    assert main(["--docs", str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("name", sorted(topic_schemas()))
def test_every_topic_schema_is_a_valid_json_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(topic_schemas()[name])


def _parser() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH: the AsyncAPI parser check needs Node.js and npm")
    if not (VALIDATOR / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.skip("@asyncapi/parser not installed: run `make asyncapi-tools` (needs npm)")
    return [node, str(VALIDATOR / "validate.mjs")]


def _parse(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_parser(), str(path)], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_asyncapi_document_passes_the_asyncapi_parser() -> None:
    done = _parse(DOCS / "asyncapi.yaml")
    assert done.returncode == 0, (
        f"the AsyncAPI parser refused docs/asyncapi.yaml:\n{done.stdout}{done.stderr}"
    )
    assert "valid AsyncAPI 3.0.0, 7 channels" in done.stdout


def test_the_parser_check_fails_on_a_broken_document(tmp_path: Path) -> None:
    document: dict[str, Any] = asyncapi()
    document["operations"]["receiveCommands"]["action"] = "subscribe"  # AsyncAPI 2 wording
    document["components"]["schemas"]["ResultError"]["properties"]["retryable"]["type"] = "bool"
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(yaml.safe_dump(document, sort_keys=False))
    done = _parse(broken)
    assert done.returncode == 1, done.stdout
    assert "receiveCommands/action" in done.stdout
    assert "retryable/type" in done.stdout


# --- every JSON example in docs/contract.md against its topic's schema -----------------

FENCE = re.compile(r"^```json\n(.*?)^```", re.DOTALL | re.MULTILINE)


def contract_examples() -> list[Any]:
    """Every JSON value in the contract's ```json blocks (a block may hold several)."""
    text = (DOCS / "contract.md").read_text()
    decoder = json.JSONDecoder()
    examples = []
    for block in FENCE.findall(text):
        position = 0
        while block[position:].strip():
            position += len(block[position:]) - len(block[position:].lstrip())
            value, position = decoder.raw_decode(block, position)
            examples.append(value)
    return examples


def schema_for(example: Any) -> str:
    """The docs/schemas file an example belongs to, by its shape."""
    if isinstance(example, dict) and example.get("specversion") == "1.0":
        kind = str(example.get("type", ""))
        return "result.json" if kind.startswith("com.bird.bridge.") else "channel-event.json"
    if isinstance(example, dict) and "action" in example:
        return "command.json"
    raise AssertionError(f"a JSON example of contract.md with no schema: {example!r:.200}")


EXAMPLES = contract_examples()


def test_the_contract_has_an_example_of_every_json_topic_but_the_ledger() -> None:
    found = sorted({schema_for(example) for example in EXAMPLES})
    assert found == ["channel-event.json", "command.json", "result.json"]
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize(
    "example", EXAMPLES, ids=lambda e: f"{schema_for(e)}:{e.get('action', e.get('type'))}"
)
def test_every_contract_example_is_valid_against_its_schema(example: Any) -> None:
    schema = json.loads((DOCS / "schemas" / schema_for(example)).read_text())
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(example), key=lambda e: e.json_path
    )
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_a_wrong_example_is_caught() -> None:
    schema = json.loads((DOCS / "schemas" / "command.json").read_text())
    wrong = {"commandId": "c-1", "action": "create", "connector": {"name": "x", "colour": 1}}
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(wrong))
    assert errors


# --- what the bridge writes is valid against the committed schemas ---------------------


def _validator(name: str) -> Any:
    return jsonschema.Draft202012Validator(json.loads((DOCS / "schemas" / name).read_text()))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=20,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "service": json_values,
        "event": json_values,
        "payload": st.dictionaries(
            st.sampled_from(["id", "workspaceId", "status", "updatedAt", "name"]) | st.text(),
            json_values,
        )
        | json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(body=bodies, request_id=st.none() | st.text(min_size=1), ws=st.none() | st.text())
def test_every_channel_event_written_is_valid_against_its_schema(
    body: dict[str, Any], request_id: str | None, ws: str | None
) -> None:
    raw = orjson.dumps(body)
    record = normalize_event(
        orjson.loads(raw),
        raw_body=raw,
        request_id=request_id,
        default_workspace_id=ws,
        received_at=datetime(2026, 1, 2, tzinfo=UTC),
        origin="webhook",
    )
    errors = list(_validator("channel-event.json").iter_errors(orjson.loads(record.value)))
    assert not errors, [f"{e.json_path}: {e.message}" for e in errors]


CONNECTOR = {"id": "cn-1", "channelId": "ch-1", "name": "x"}


@pytest.mark.parametrize(
    ("action", "status", "fields"),
    [
        ("create", "accepted", {"connector": CONNECTOR}),
        ("get", "succeeded", {"connector": CONNECTOR, "channel": {"id": "ch-1"}}),
        ("list", "succeeded", {"connectors": [CONNECTOR]}),
        ("delete", "succeeded", {"extra": {"connectorId": "cn-1", "alreadyDeleted": False}}),
        ("???", "failed", {"error": error_body("invalid_command", "x", details={"field": "a"})}),
        ("create", "failed", {"error": error_body("timeout", "t", retryable=True)}),
    ],
)
def test_every_result_written_is_valid_against_its_schema(
    action: str, status: Any, fields: dict[str, Any]
) -> None:
    value = result_value(
        command_id="c-1", action=action, status=status, now=datetime.now(UTC), **fields
    )
    errors = list(_validator("result.json").iter_errors(orjson.loads(value)))
    assert not errors, [f"{e.json_path}: {e.message}" for e in errors]


def test_a_ledger_record_written_is_valid_against_its_schema() -> None:
    result = result_value(
        command_id="c-1", action="create", status="accepted", now=datetime.now(UTC)
    )
    entry = Entry(
        command_id="c-1",
        fingerprint="f",
        action="create",
        state="started",
        started_at="2026-01-02T00:00:00.000Z",
    ).accepted(CONNECTOR, result)
    errors = list(_validator("ledger-record.json").iter_errors(orjson.loads(entry.to_json())))
    assert not errors, [f"{e.json_path}: {e.message}" for e in errors]


@settings(max_examples=200, deadline=None)
@given(body=bodies, request_id=st.none() | st.text(min_size=1), ws=st.none() | st.text())
def test_every_channel_state_written_is_valid_against_its_schema(
    body: dict[str, Any], request_id: str | None, ws: str | None
) -> None:
    raw = orjson.dumps(body)
    record = normalize_event(
        orjson.loads(raw),
        raw_body=raw,
        request_id=request_id,
        default_workspace_id=ws,
        received_at=datetime(2026, 1, 2, tzinfo=UTC),
        origin="reconcile",
    )
    event = channel_event(record.value)
    if event is None:  # not a channel's event (no channel id): nothing is folded
        return
    state = orjson.loads(state_record(event).value)
    errors = list(_validator("channel-state.json").iter_errors(state))
    assert not errors, [f"{e.json_path}: {e.message}" for e in errors]
