"""Signature verification (bird-api.md 4.4) against vectors made outside this code."""

from __future__ import annotations

import base64

import pytest

from bridge.errors import BadSignature
from bridge.ingest.verify import sign, verify_signature

BODY = b'{"service":"channels","event":"channel.created","payload":{"id":"c0ffee00"}}'
URL = "https://bridge.example.org/webhooks/bird"
TS = "1751742552"
KEY = "my-signing-secret"
# Computed with openssl, independently of this code:
#   (printf 'TS\nURL\n'; openssl dgst -sha256 -binary body) \
#     | openssl dgst -sha256 -hmac KEY -binary | base64
VECTOR = "FkXXld2Ur4Dkc8HOmbJDILEzQCQC8jWF5n3KX722Tvg="


def check(signature: str | None, **overrides: object) -> None:
    args: dict[str, object] = {
        "signatures": [] if signature is None else [signature],
        "timestamps": [TS],
        "url": URL,
        "body": BODY,
        "keys": [KEY],
    }
    args.update(overrides)
    verify_signature(**args)  # type: ignore[arg-type]


def test_sign_matches_the_independent_vector() -> None:
    assert sign(KEY, TS, URL, BODY) == VECTOR


def test_valid_signature_is_accepted() -> None:
    check(VECTOR)


def test_previous_key_is_accepted_during_rotation() -> None:
    check(VECTOR, keys=["new-key", KEY])


@pytest.mark.parametrize(
    ("signature", "overrides", "reason"),
    [
        (None, {}, "missing messagebird-signature"),
        (VECTOR, {"timestamps": []}, "missing messagebird-request-timestamp"),
        ("not base64!!", {}, "not base64"),
        (VECTOR, {"body": BODY + b" "}, "does not match"),
        (VECTOR, {"url": URL + "?x=1"}, "does not match"),
        (VECTOR, {"timestamps": ["1751742553"]}, "does not match"),
        (VECTOR, {"keys": ["other"]}, "does not match"),
        (VECTOR, {"keys": []}, "does not match"),
        (VECTOR, {"signatures": [VECTOR, VECTOR]}, "must appear once"),
        (VECTOR, {"timestamps": [TS, TS]}, "must appear once"),
        ("A" * 500, {}, "too long"),
        (base64.b64encode(b"x" * 32).decode(), {}, "does not match"),
    ],
)
def test_bad_signatures_are_refused_with_a_reason(
    signature: str | None, overrides: dict[str, object], reason: str
) -> None:
    with pytest.raises(BadSignature, match=reason):
        check(signature, **overrides)


def test_old_timestamps_are_not_refused() -> None:
    """Bird retries with the original timestamp for hours (bird-api.md 4.4)."""
    old = "1000000000"
    check(sign(KEY, old, URL, BODY), timestamps=[old])
