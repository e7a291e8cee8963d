"""How Bird signs a webhook delivery (bird-api.md 4.4), written for the simulator alone. Pure.

The simulator plays Bird, so it must not borrow the bridge's verifier: a mistake there
would be made on both sides and every test would still pass. This follows Bird's PHP
sample: ``base64_encode(hash_hmac('sha256', "$timestamp\\n$url\\n" . hash('sha256', $body,
true), $signingKey, true))``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE_HEADER = "messagebird-signature"
TIMESTAMP_HEADER = "messagebird-request-timestamp"
REQUEST_ID_HEADER = "messagebird-request-id"


def bird_signature(signing_key: str, timestamp: str, url: str, body: bytes) -> str:
    """The ``messagebird-signature`` value Bird sends for ``body`` posted to ``url``."""
    message = b"\n".join((timestamp.encode(), url.encode())) + b"\n" + hashlib.sha256(body).digest()
    digest = hmac.digest(signing_key.encode(), message, "sha256")
    return base64.standard_b64encode(digest).decode("ascii")
