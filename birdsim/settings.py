"""Settings of the Bird API simulator: every knob, with defaults, as frozen dataclasses (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

# Fixed, documented defaults so `bridge dev` can print them and configure the bridge to match.
DEFAULT_ORGANIZATION_ID = "11111111-1111-4111-8111-111111111111"
DEFAULT_WORKSPACE_ID = "22222222-2222-4222-8222-222222222222"
DEV_ACCESS_KEY = "dev-access-key"

# bird-api.md 4.7: the logs page speaks of "36 attempts" for one request.
MAX_DELIVERY_ATTEMPTS = 36


class InvalidSettings(ValueError):
    """Settings the simulator cannot run with; ``problems`` names every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid simulator settings:\n  " + "\n  ".join(self.problems))


ScriptKind = Literal["status", "reset", "drop", "timeout", "pass"]


@dataclass(frozen=True)
class ScriptedResponse:
    """One scripted answer.

    ``status``: answer ``status`` (with ``Retry-After`` when ``retry_after`` is set), not processed.
    ``reset``: close the connection without answering, not processed.
    ``drop``: process the request, then close the connection without answering.
    ``timeout``: hang (``FaultSettings.hang_s``), not processed.
    ``pass``: handle normally.
    """

    kind: ScriptKind = "status"
    status: int = 503
    retry_after: int | None = None


@dataclass(frozen=True)
class ScriptRule:
    """The next ``len(responses)`` requests matching ``method`` and ``path`` get these answers."""

    method: str
    path: str
    responses: tuple[ScriptedResponse, ...]


@dataclass(frozen=True)
class FaultSettings:
    """Fault injection and rate limits; rates are probabilities in [0, 1] per request."""

    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    throttle_rate: float = 0.0  # 429 with Retry-After
    throttle_no_retry_after_rate: float = 0.0  # 429 without Retry-After
    retry_after_s: int = 1
    timeout_rate: float = 0.0
    hang_s: float = 300.0  # how long a "timeout" request hangs before answering 504
    reset_rate: float = 0.0
    # bird-api.md 1, Rate limiting: per workspace, GET 50/s and POST 500/s; <= 0 disables.
    rate_limit_get_per_s: float = 50.0
    rate_limit_post_per_s: float = 500.0
    fail_installs: bool = False
    stuck_installs: bool = False
    seed: int | None = None
    script: tuple[ScriptRule, ...] = ()


@dataclass(frozen=True)
class Organization:
    """Another organization: its workspaces and the access keys that may use them."""

    id: str
    access_keys: tuple[str, ...]
    workspace_ids: tuple[str, ...]

    def __repr__(self) -> str:
        return (
            f"Organization(id={self.id!r}, workspace_ids={self.workspace_ids!r}, "
            f"access_keys=<{len(self.access_keys)} hidden>)"
        )


@dataclass(frozen=True)
class SimulatorSettings:
    """Everything the simulator needs; the defaults suit `bridge dev`."""

    access_keys: tuple[str, ...] = (DEV_ACCESS_KEY,)
    organization_id: str = DEFAULT_ORGANIZATION_ID
    workspace_ids: tuple[str, ...] = (DEFAULT_WORKSPACE_ID,)
    install_delay_s: float = 0.5
    activate_delay_s: float = 1.5
    reject_duplicates: bool = False
    allow_http_urls: bool = False
    delivery_retry_base_s: float = 1.0
    delivery_retry_cap_s: float = 300.0
    delivery_max_attempts: int = MAX_DELIVERY_ATTEMPTS
    delivery_timeout_s: float = 10.0
    admin_token: str | None = None  # when set, the control API wants `Authorization: Bearer <t>`
    region: str = "eu-west-1"
    request_log_size: int = 10_000
    faults: FaultSettings = field(default_factory=FaultSettings)
    # More organizations beside the one above, each with its own keys and workspaces. A key
    # works only in its own organization's workspaces (403 elsewhere, as at Bird).
    organizations: tuple[Organization, ...] = ()

    def all_organizations(self) -> tuple[Organization, ...]:
        first = Organization(self.organization_id, self.access_keys, self.workspace_ids)
        return (first, *self.organizations)

    def __repr__(self) -> str:
        # Never show keys: settings end up in log lines and test failure output.
        return (
            f"SimulatorSettings(organization_id={self.organization_id!r}, "
            f"workspace_ids={self.workspace_ids!r}, access_keys=<{len(self.access_keys)} hidden>, "
            f"install_delay_s={self.install_delay_s}, activate_delay_s={self.activate_delay_s})"
        )

    def problems(self) -> list[str]:
        """Every invalid setting, each naming its field (empty when valid)."""
        found: list[str] = []
        if not self.access_keys or any(not k for k in self.access_keys):
            found.append("access_keys: at least one non-empty key is required")
        if not self.workspace_ids:
            found.append("workspace_ids: at least one workspace is required")
        orgs = self.all_organizations()
        found.extend(
            f"organizations[{org.id}].access_keys: at least one non-empty key is required"
            for org in orgs[1:]
            if not org.access_keys or any(not k for k in org.access_keys)
        )
        ids = [org.id for org in orgs]
        if len(set(ids)) != len(ids):
            found.append("organizations: an organization id appears twice")
        keys = [k for org in orgs for k in org.access_keys]
        spaces = [ws for org in orgs for ws in org.workspace_ids]
        if len(set(keys)) != len(keys):
            found.append("organizations: an access key belongs to two organizations")
        if len(set(spaces)) != len(spaces):
            found.append("organizations: a workspace belongs to two organizations")
        delays = ("install_delay_s", "activate_delay_s", "delivery_retry_base_s")
        found.extend(
            f"{name}: must be >= 0"
            for name in (*delays, "delivery_retry_cap_s")
            if getattr(self, name) < 0
        )
        if self.delivery_timeout_s <= 0:
            found.append("delivery_timeout_s: must be > 0")
        if not 1 <= self.delivery_max_attempts <= MAX_DELIVERY_ATTEMPTS:
            found.append(f"delivery_max_attempts: must be in 1..{MAX_DELIVERY_ATTEMPTS}")
        if self.request_log_size < 1:
            found.append("request_log_size: must be >= 1")
        return found
