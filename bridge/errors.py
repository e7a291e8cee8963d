"""The bridge's error tree (pure; no I/O).

    BridgeError                      base; ``http_status``, ``retryable``, ``outcome``: class facts
    ├── ConfigError                  start-up settings; every problem, each naming its variable
    ├── StartupError                 cannot start: port in use, Kafka or Bird unreachable
    ├── WebhookRejected              an inbound webhook we refuse (4xx, with a reason)
    │   ├── PayloadTooLarge          413
    │   ├── BadSignature             401
    │   │   ├── SignatureMismatch    well-formed, but matches no key (logged with the URLs)
    │   │   └── WorkspaceMismatch    signed for one workspace, the event names another
    │   ├── UnknownWorkspace         404 (a workspace this bridge does not serve)
    │   ├── BadPayload               400
    │   ├── RequestTimeout           408 (body not received in time)
    │   └── TooManyRequests          429 (inbound rate limit, with Retry-After)
    ├── RecordTooLarge               over Kafka's record size limit (413; never retried)
    ├── PublishUnavailable           Kafka did not acknowledge in time (503 + Retry-After)
    ├── InvalidCommand               a command record that fails validation (names the field)
    ├── LedgerRecordMissing          a finished command's ledger record is gone from the topic
    └── BirdError                    a Bird API call failed (``bird_status``: what Bird answered)
        ├── BirdRejected             Bird refused the request (4xx but 429); retrying cannot help
        └── BirdUnavailable          Bird not reachable, 429, or deadline passed; retryable
            └── BirdOutcomeUnknown   timeout, 5xx, connection lost: Bird may have acted on it

Third-party exceptions (aiohttp, aiokafka) are translated into these once, at the edge.
``outcome`` is the webhook's ``outcome`` label and log field (snake_case, like ``published``):
dashboards use it, so it is spelled out here and does not follow class renames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class BridgeError(Exception):
    http_status: int = 500
    retryable: bool = False
    reason: str = "internal error"
    outcome: str = "error"

    def __init__(self, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(self.reason)

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with this error's answer."""
        return {}


class ConfigError(BridgeError):
    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


class StartupError(BridgeError):
    """The process cannot do its job at all (a port in use, a broker unreachable); the
    command line prints ``reason`` as one line and exits non-zero."""


class WebhookRejected(BridgeError):
    http_status = 400
    outcome = "rejected"


class PayloadTooLarge(WebhookRejected):
    http_status = 413
    outcome = "payload_too_large"


class BadSignature(WebhookRejected):
    http_status = 401
    outcome = "bad_signature"


class SignatureMismatch(BadSignature):
    """Well-formed signature headers that match no key: most often the URL differs from the
    one Bird signed (trailing slash, host, scheme), or the key is not the subscription's."""

    reason = "signature does not match"


class WorkspaceMismatch(BadSignature):
    """Signed with one workspace's key, but the event names another workspace: a key is
    only good for its own workspace's events (contract 12)."""

    reason = "the event names another workspace than the one it is signed for"
    outcome = "workspace_mismatch"


class UnknownWorkspace(WebhookRejected):
    """The path names a workspace this bridge is not configured for."""

    http_status = 404
    reason = "unknown workspace"
    outcome = "unknown_workspace"


class BadPayload(WebhookRejected):
    http_status = 400
    outcome = "bad_payload"


class RequestTimeout(WebhookRejected):
    http_status = 408
    outcome = "request_timeout"


class TooManyRequests(WebhookRejected):
    """Over the inbound per-client rate limit; ``retry_after_s`` goes into ``Retry-After``."""

    http_status = 429
    outcome = "too_many_requests"

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"rate limit exceeded; retry after {retry_after_s}s")

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class RecordTooLarge(BridgeError):
    """A record over Kafka's message size limit: retrying cannot help."""

    http_status = 413
    reason = "the event is larger than Kafka's record size limit"
    outcome = "record_too_large"

    def __init__(
        self, reason: str | None = None, *, size: int | None = None, limit: int | None = None
    ) -> None:
        self.size = size  # bytes, as the producer counts them (None: unknown)
        self.limit = limit
        super().__init__(reason)


class PublishUnavailable(BridgeError):
    http_status = 503
    retryable = True
    reason = "Kafka did not acknowledge the event in time"
    outcome = "unavailable"


class InvalidCommand(BridgeError):
    """A command record that cannot be executed; ``field`` names the offending JSON path."""

    def __init__(
        self, field: str, reason: str, command_id: str | None = None, *, action: str | None = None
    ) -> None:
        self.field = field
        self.command_id = command_id
        self.action = action  # a known action, when the record names one
        super().__init__(f"{field}: {reason}")


class LedgerRecordMissing(BridgeError):
    """A final ledger entry's record cannot be read back from the ledger topic (retention,
    or a broker that lost its data): the command seen again gets a dead letter instead."""

    reason = "the final ledger record of this command is gone"


class BirdError(BridgeError):
    """A failed call to Bird, mapped from its error body (bird-api.md 1, Errors).

    ``bird_status`` is the HTTP status Bird answered (``None`` when it did not answer);
    ``http_status`` stays what it is on every ``BridgeError``: the status the bridge would
    answer with (502, a gateway's failure). ``code`` is the failed result's error code."""

    http_status = 502
    code = "bird_error"

    def __init__(
        self,
        message: str,
        *,
        bird_status: int | None = None,
        details: Mapping[str, Any] | None = None,
        bird_code: str | None = None,
    ) -> None:
        self.message = message
        self.bird_status = bird_status
        self.details = dict(details or {})
        self.bird_code = bird_code
        super().__init__(message)

    def as_result_error(self) -> dict[str, Any]:
        """The ``error`` object of a failed result (contract section 4)."""
        details = dict(self.details)
        if self.bird_code:
            details.setdefault("birdCode", self.bird_code)
        return {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "httpStatus": self.bird_status,
            "details": details,
        }


class BirdRejected(BirdError):
    """Bird refused the request (a 4xx other than 429): the same request fails again."""

    code = "bird_client_error"


class BirdUnavailable(BirdError):
    """Bird cannot be reached, asks to slow down (429), or the deadline passed before it
    answered. Bird has not acted on the request: it may be sent again."""

    code = "bird_unavailable"
    retryable = True


class BirdOutcomeUnknown(BirdUnavailable):
    """Bird may or may not have acted on the request (timeout, 5xx, connection lost
    mid-request): a non-idempotent call (create) is looked for before it is sent again."""
