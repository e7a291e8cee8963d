"""Bird webhook signatures (bird-api.md 4.4). Pure: bytes in, a verdict out.

signed = timestamp + "\\n" + url + "\\n" + sha256(raw_body)   (the hash as 32 raw bytes)
header = base64(HMAC-SHA256(key=signing key as given, msg=signed))
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

from bridge.errors import BadSignature, SignatureMismatch

SIGNATURE_HEADER = "messagebird-signature"
TIMESTAMP_HEADER = "messagebird-request-timestamp"
REQUEST_ID_HEADER = "messagebird-request-id"

# A base64 HMAC-SHA256 is 44 characters; anything much longer is not a signature.
_MAX_SIGNATURE_CHARS = 128
_MAX_TIMESTAMP_CHARS = 64


def compute_signature(key: str, timestamp: str, url: str, body: bytes) -> bytes:
    """The raw 32-byte HMAC Bird sends (base64-encoded) in ``messagebird-signature``."""
    mac = hmac.new(key.encode("utf-8", "surrogateescape"), digestmod=hashlib.sha256)
    # Header text arrives with undecodable bytes escaped (aiohttp): sign the bytes as sent.
    mac.update(f"{timestamp}\n{url}\n".encode("utf-8", "surrogateescape"))
    mac.update(hashlib.sha256(body).digest())
    return mac.digest()


def sign(key: str, timestamp: str, url: str, body: bytes) -> str:
    """The header value Bird would send for this delivery."""
    return base64.b64encode(compute_signature(key, timestamp, url, body)).decode("ascii")


def verify_signature(
    *,
    signatures: Sequence[str],
    timestamps: Sequence[str],
    url: str,
    body: bytes,
    keys: Sequence[str],
) -> None:
    """Raise ``BadSignature`` unless exactly one signature header matches one of ``keys``
    (``SignatureMismatch`` when well-formed headers match none).

    ``signatures`` / ``timestamps`` are all values of the headers, so a request that
    repeats a header is refused rather than letting one copy win. Timestamps are not
    checked for freshness: Bird retries with the original timestamp for hours; replay
    protection is the request-id dedupe in front of the publisher.
    """
    if not signatures:
        raise BadSignature(f"missing {SIGNATURE_HEADER} header")
    if not timestamps:
        raise BadSignature(f"missing {TIMESTAMP_HEADER} header")
    if len(signatures) > 1 or len(timestamps) > 1:
        raise BadSignature("signature headers must appear once")
    signature, timestamp = signatures[0].strip(), timestamps[0].strip()
    if len(signature) > _MAX_SIGNATURE_CHARS or len(timestamp) > _MAX_TIMESTAMP_CHARS:
        raise BadSignature("signature headers too long")
    try:
        given = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature(f"{SIGNATURE_HEADER} is not base64") from None
    # Compare against every key (no early exit) so timing does not reveal which one matched.
    matched = False
    for key in keys:
        try:
            expected = compute_signature(key, timestamp, url, body)
        except UnicodeEncodeError:
            raise BadSignature(f"{TIMESTAMP_HEADER} is not valid text") from None
        matched |= hmac.compare_digest(given, expected)
    if not matched:
        raise SignatureMismatch
