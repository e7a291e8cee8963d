"""The simulator's own log redaction: its keys never appear, whatever shape a field has."""

from __future__ import annotations

from birdsim.logs import REDACTED, Redactor


def test_keys_are_redacted_in_strings_lists_and_dicts() -> None:
    redact = Redactor(["real-secret-key", "admin-token-1"])
    event = redact(
        None,
        "info",
        {
            "event": "request",
            "authorization": "AccessKey real-secret-key",
            "headers": ["Bearer admin-token-1", "x"],
            "query": {"key": "real-secret-key", "n": 3},
            "status": 200,
        },
    )
    assert event == {
        "event": "request",
        "authorization": f"AccessKey {REDACTED}",
        "headers": [f"Bearer {REDACTED}", "x"],
        "query": {"key": REDACTED, "n": 3},
        "status": 200,
    }


def test_without_secrets_fields_keep_their_shape() -> None:
    event = {"event": "request", "roles": ["a", "b"], "faults": {"error_rate": 0.5}}
    assert Redactor([])(None, "info", dict(event)) == event
    assert Redactor(["unrelated-key"])(None, "info", dict(event)) == event
