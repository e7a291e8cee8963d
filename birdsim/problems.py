"""Bird-shaped API errors raised by the pure simulator modules (pure; no I/O).

Body (bird-api.md 1, Errors): ``{"code": "PascalCase", "message": "...", "details": {path: [..]}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ApiError(Exception):
    """An error answer: HTTP status plus Bird's error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Sequence[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = {k: list(v) for k, v in (details or {}).items()}
        self.headers = dict(headers or {})
        super().__init__(f"{status} {code}: {message}")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def not_found(what: str) -> ApiError:
    return ApiError(404, "NotFound", f"{what} not found")


def invalid_payload(details: Mapping[str, Sequence[str]]) -> ApiError:
    # Bird's own message for this code ([OBS] bird-api.md 1, Errors).
    return ApiError(
        422,
        "InvalidPayload",
        "One or more fields provided in the request body are malformed",
        details,
    )


def invalid_parameters(details: Mapping[str, Sequence[str]]) -> ApiError:
    return ApiError(422, "InvalidParameters", "One or more query parameters are malformed", details)


class Problems:
    """Collects validation problems by JSON path so one answer reports all of them."""

    def __init__(self) -> None:
        self.details: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.details.setdefault(path, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.details)

    def raise_payload(self) -> None:
        if self.details:
            raise invalid_payload(self.details)

    def raise_parameters(self) -> None:
        if self.details:
            raise invalid_parameters(self.details)
