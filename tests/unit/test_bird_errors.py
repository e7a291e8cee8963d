"""Bird failures in the error tree (bridge/errors.py): the class says what happened, and
``http_status`` means what it means on every other BridgeError."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from bridge.bird.client import _error_from_response
from bridge.errors import (
    BirdError,
    BirdOutcomeUnknown,
    BirdRejected,
    BirdUnavailable,
    BridgeError,
    LedgerRecordMissing,
)


@pytest.mark.parametrize(
    ("status", "kind", "code", "retryable"),
    [
        (400, BirdRejected, "bird_client_error", False),
        (404, BirdRejected, "bird_client_error", False),
        (422, BirdRejected, "bird_client_error", False),
        (429, BirdUnavailable, "bird_unavailable", True),
        (500, BirdOutcomeUnknown, "bird_unavailable", True),
        (503, BirdOutcomeUnknown, "bird_unavailable", True),
    ],
)
def test_birds_answer_picks_the_class(
    status: int, kind: type[BirdError], code: str, retryable: bool
) -> None:
    body = orjson.dumps({"code": "Bad", "message": "no", "details": {"f": ["x"]}})
    error = _error_from_response(status, body, "create_connector")
    assert type(error) is kind
    assert (error.code, error.retryable, error.bird_status) == (code, retryable, status)
    assert error.http_status == 502  # the bridge's status, as on every BridgeError
    assert error.as_result_error() == {
        "code": code,
        "message": f"create_connector: Bird answered {status}: no",
        "retryable": retryable,
        "httpStatus": status,
        "details": {"f": ["x"], "birdCode": "Bad"},
    }


def test_no_answer_has_no_bird_status() -> None:
    error = BirdOutcomeUnknown("get_channel: Bird did not answer in time")
    assert isinstance(error, BirdUnavailable)
    assert error.as_result_error()["httpStatus"] is None
    assert error.retryable


def test_the_command_side_errors_are_bridge_errors() -> None:
    assert issubclass(LedgerRecordMissing, BridgeError)
    assert issubclass(BirdOutcomeUnknown, BridgeError)


def test_the_command_runtime_does_not_import_the_app() -> None:
    # app.py builds the command side; runtime.py must not import app.py back.
    code = "import sys, bridge.commands.runtime; print('bridge.app' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
