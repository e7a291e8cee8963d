"""docs/schemas/*.json and docs/asyncapi.yaml: generated from bridge/messages.py and
current, a valid AsyncAPI document for the AsyncAPI parser, and every JSON example of
docs/contract.md valid against its topic's schema."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from bridge.schemas import asyncapi, rendered, topic_schemas

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
    assert "valid AsyncAPI 3.0.0, 5 channels" in done.stdout


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
