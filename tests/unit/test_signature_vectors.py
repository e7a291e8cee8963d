"""Signature vectors this project's code did not make, checked against both signers.

The bridge verifies with ``bridge.ingest.verify``; the simulator signs with its own
``birdsim.signing``. Both are held to:

- MessageBird's published test vectors (python-rest-api, ``tests/test_signed_request.py``;
  quoted in bird-api.md section 6). That older SDK signs the same HMAC construction with
  the sorted, url-encoded query string (``urlencode`` of the sorted parameters, so ``:``
  is ``%3A`` and ``+`` is ``%2B``) where Bird now signs the URL.
- ``tests/vectors/bird_php_sample.json``, made by running Bird's documented PHP sample
  (``php tests/vectors/bird_php_sample.php > tests/vectors/bird_php_sample.json``, PHP
  8.2): a trailing-slash URL, an empty body, a query string, non-ASCII URL, body and key,
  and a body that is not UTF-8. This test does not need PHP.
"""

from __future__ import annotations

import ast
import base64
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from birdsim.signing import bird_signature
from bridge.errors import SignatureMismatch
from bridge.ingest.verify import compute_signature, sign, verify_signature

ROOT = Path(__file__).parents[2]

MESSAGEBIRD_KEY = "PlLrKaqvZNRR5zAjm42ZT6q1SQxgbbGd"
MESSAGEBIRD_TIMESTAMP = "1547198231"
MESSAGEBIRD_QUERY = {
    "recipient": "31612345678",
    "reference": "FOO",
    "statusDatetime": "2019-01-11T09:17:11+00:00",
    "id": "eef0ab57a9e049be946f3821568c2b2e",
    "status": "delivered",
    "mccmnc": "20408",
    "ported": "1",
}
MESSAGEBIRD_VECTORS = [
    (b"", "KVBdcVdz2lYMwcBLZCRITgxUfA/WkwSi+T3Wxl2HL6w="),
    (b'{"foo":"bar"}', "2bl+38H4oHVg03pC3bk2LvCB0IHFgfC4cL5HPQ0LdmI="),
]


def signed_query(params: dict[str, str]) -> str:
    """What the older SDK signs in place of the URL: the parameters sorted by name, url-encoded."""
    return urlencode(sorted(params.items()), doseq=True)


def test_the_query_string_is_built_like_the_older_sdk() -> None:
    assert signed_query(MESSAGEBIRD_QUERY) == (
        "id=eef0ab57a9e049be946f3821568c2b2e&mccmnc=20408&ported=1&recipient=31612345678"
        "&reference=FOO&status=delivered&statusDatetime=2019-01-11T09%3A17%3A11%2B00%3A00"
    )


@pytest.mark.parametrize(("body", "expected"), MESSAGEBIRD_VECTORS)
def test_messagebird_sdk_vectors(body: bytes, expected: str) -> None:
    signed = signed_query(MESSAGEBIRD_QUERY)
    args = (MESSAGEBIRD_KEY, MESSAGEBIRD_TIMESTAMP, signed, body)
    assert compute_signature(*args) == base64.b64decode(expected)
    assert sign(*args) == expected
    assert bird_signature(*args) == expected
    verify_signature(
        signatures=[expected],
        timestamps=[MESSAGEBIRD_TIMESTAMP],
        url=signed,
        body=body,
        keys=[MESSAGEBIRD_KEY],
    )
    # The SDK's own negative case: reference BAR instead of FOO.
    other = signed_query({**MESSAGEBIRD_QUERY, "reference": "BAR"})
    with pytest.raises(SignatureMismatch):
        verify_signature(
            signatures=[expected],
            timestamps=[MESSAGEBIRD_TIMESTAMP],
            url=other,
            body=body,
            keys=[MESSAGEBIRD_KEY],
        )


PHP_VECTORS: list[dict[str, Any]] = orjson.loads(
    (ROOT / "tests" / "vectors" / "bird_php_sample.json").read_bytes()
)["vectors"]


@pytest.mark.parametrize("vector", PHP_VECTORS, ids=[v["name"] for v in PHP_VECTORS])
def test_birds_php_sample_vectors(vector: dict[str, Any]) -> None:
    key, timestamp, url = vector["signingKey"], vector["timestamp"], vector["url"]
    body = base64.b64decode(vector["bodyBase64"])
    expected = vector["signature"]
    assert sign(key, timestamp, url, body) == expected
    assert bird_signature(key, timestamp, url, body) == expected
    verify_signature(signatures=[expected], timestamps=[timestamp], url=url, body=body, keys=[key])
    with pytest.raises(SignatureMismatch):
        verify_signature(
            signatures=[expected], timestamps=[timestamp], url=url + "x", body=body, keys=[key]
        )


def test_the_php_vectors_cover_what_they_claim() -> None:
    names = {v["name"] for v in PHP_VECTORS}
    assert {"trailing slash", "empty body", "non-ASCII URL and body"} <= names
    by_name = {v["name"]: v for v in PHP_VECTORS}
    assert by_name["trailing slash"]["url"].endswith("/")
    assert by_name["empty body"]["bodyBase64"] == ""
    assert not by_name["non-ASCII URL and body"]["url"].isascii()
    # A trailing slash is another URL to the signature.
    assert by_name["trailing slash"]["signature"] != by_name["docs example URL"]["signature"]


def _is_bridge_module(name: str) -> bool:
    """``bridge`` or one of its modules, or the dev runner: nothing the simulator may use."""
    return name.split(".")[0] in {"bridge", "bridgedev"}


def test_the_simulator_imports_nothing_from_the_bridge() -> None:
    """Its own signer, settings errors and logging, so a mistake in the bridge is not
    repeated by the simulator (and the simulator runs without the bridge installed)."""
    modules = sorted(ROOT.joinpath("birdsim").glob("*.py"))
    assert len(modules) > 10
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not _is_bridge_module(node.module or ""), (path, node.module)
            elif isinstance(node, ast.Import):
                assert not any(_is_bridge_module(a.name) for a in node.names), path
    names = ", ".join(f"birdsim.{p.stem}" for p in modules if p.stem != "__main__")
    code = (
        f"import sys, {names};"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bridge', 'bridgedev')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert loaded.stdout.strip() == "[]"
