"""Fault injection decisions and Bird's per-workspace rate limits (pure: time and RNG passed in).

The HTTP layer asks ``FaultPlan.decide`` what to do with each Bird request, then carries it out.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import random
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from birdsim.settings import FaultSettings, ScriptedResponse, ScriptRule

ActionKind = Literal["pass", "status", "reset", "drop", "timeout"]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RATE_FIELDS = (
    "error_rate",
    "throttle_rate",
    "throttle_no_retry_after_rate",
    "timeout_rate",
    "reset_rate",
)
_SCRIPT_KINDS = ("reset", "drop", "timeout", "pass")


@dataclass(frozen=True)
class FaultAction:
    """What to do with one request; ``source`` says which knob chose it (for the request log)."""

    kind: ActionKind = "pass"
    status: int = 200
    retry_after: int | None = None
    delay_s: float = 0.0
    source: str | None = None


class FaultSettingsError(ValueError):
    """Invalid fault settings; ``problems`` names every bad field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def check_faults(faults: FaultSettings) -> list[str]:
    problems = [
        f"{name}: must be between 0 and 1"
        for name in _RATE_FIELDS
        if not 0.0 <= getattr(faults, name) <= 1.0
    ]
    problems.extend(
        f"{name}: must be >= 0"
        for name in ("latency_s", "latency_jitter_s", "hang_s")
        if getattr(faults, name) < 0
    )
    if not 500 <= faults.error_status <= 599:
        problems.append("error_status: must be a 5xx status")
    if faults.retry_after_s < 0:
        problems.append("retry_after_s: must be >= 0")
    return problems


def _parse_response(raw: object, where: str, problems: list[str]) -> ScriptedResponse | None:
    if isinstance(raw, bool):
        problems.append(f"{where}: must be a status, a kind or an object")
        return None
    if isinstance(raw, int):
        raw = {"status": raw}
    if isinstance(raw, str):
        raw = {"kind": raw}
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a status, a kind or an object")
        return None
    kind = raw.get("kind", "status")
    status = raw.get("status", 503)
    retry_after = raw.get("retry_after")
    if kind not in ("status", *_SCRIPT_KINDS):
        problems.append(f"{where}.kind: must be one of status, {', '.join(_SCRIPT_KINDS)}")
        return None
    if kind == "status" and (not isinstance(status, int) or not 100 <= status <= 599):
        problems.append(f"{where}.status: must be an HTTP status")
        return None
    if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
        problems.append(f"{where}.retry_after: must be a non-negative integer")
        return None
    return ScriptedResponse(kind=kind, status=status, retry_after=retry_after)


def parse_script(raw: object) -> tuple[ScriptRule, ...]:
    """``[{"method": "POST", "path": "/workspaces/*/connectors", "responses": [429, 503]}]``.

    A response is a status (``429``), a kind (``"reset"``, ``"drop"``, ``"timeout"``,
    ``"pass"``) or an object (``{"status": 429, "retry_after": 2}``).
    """
    problems: list[str] = []
    if not isinstance(raw, list):
        raise FaultSettingsError(["script: must be an array of rules"])
    rules: list[ScriptRule] = []
    for index, item in enumerate(raw):
        where = f"script[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object")
            continue
        method, path, responses = item.get("method", "*"), item.get("path"), item.get("responses")
        if not isinstance(method, str) or not method:
            problems.append(f"{where}.method: must be a method name or *")
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append(f"{where}.path: must be a path glob starting with /")
        if not isinstance(responses, list) or not responses:
            problems.append(f"{where}.responses: must be a non-empty array")
            continue
        parsed = [
            _parse_response(r, f"{where}.responses[{i}]", problems) for i, r in enumerate(responses)
        ]
        if isinstance(method, str) and isinstance(path, str):
            rules.append(
                ScriptRule(method.upper(), path, tuple(r for r in parsed if r is not None))
            )
    if problems:
        raise FaultSettingsError(problems)
    return tuple(rules)


def faults_from_json(raw: object, base: FaultSettings) -> FaultSettings:
    """``base`` with the fields of the JSON object ``raw`` replaced (control API, PUT/PATCH)."""
    if not isinstance(raw, dict):
        raise FaultSettingsError(["body: must be a JSON object"])
    problems: list[str] = []
    changes: dict[str, Any] = {}
    types = {f.name: f.type for f in dataclasses.fields(FaultSettings)}
    for key, value in raw.items():
        if key not in types:
            problems.append(f"{key}: unknown fault setting")
        elif key == "script":
            try:
                changes["script"] = parse_script(value)
            except FaultSettingsError as exc:
                problems.extend(exc.problems)
        elif key == "seed":
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                problems.append("seed: must be an integer or null")
            changes[key] = value
        elif types[key] == "bool":
            if not isinstance(value, bool):
                problems.append(f"{key}: must be a boolean")
            changes[key] = value
        elif types[key] == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                problems.append(f"{key}: must be an integer")
            changes[key] = value
        elif not isinstance(value, int | float) or isinstance(value, bool):
            problems.append(f"{key}: must be a number")
        else:
            changes[key] = float(value)
    if problems:
        raise FaultSettingsError(problems)
    merged = dataclasses.replace(base, **changes)
    problems = check_faults(merged)
    if problems:
        raise FaultSettingsError(problems)
    return merged


def faults_to_json(faults: FaultSettings, pending_script: list[ScriptRule]) -> dict[str, Any]:
    body = {f.name: getattr(faults, f.name) for f in dataclasses.fields(FaultSettings)}
    body["script"] = [
        {
            "method": rule.method,
            "path": rule.path,
            "responses": [dataclasses.asdict(r) for r in rule.responses],
        }
        for rule in pending_script
    ]
    return body


class RateLimiter:
    """Sliding window per (workspace, GET|POST): at most ``n`` requests in any ``n / rate`` s.

    Rejected requests are not counted: Bird did not process them (bird-api.md 1, Rate limiting).
    """

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], deque[float]] = {}

    def allow(self, key: tuple[str, str], rate_per_s: float, now: float) -> bool:
        if rate_per_s <= 0:
            return True
        capacity = max(1, int(rate_per_s))
        window_s = capacity / rate_per_s
        window = self._windows.setdefault(key, deque())
        while window and window[0] <= now - window_s:
            window.popleft()
        if len(window) >= capacity:
            return False
        window.append(now)
        return True

    def clear(self) -> None:
        self._windows.clear()


class FaultPlan:
    """The live fault settings plus what they need between requests (script, RNG, windows)."""

    def __init__(self, faults: FaultSettings) -> None:
        self.limiter = RateLimiter()
        self.replace(faults)

    def replace(self, faults: FaultSettings) -> None:
        self.settings = faults
        self.rng = random.Random(faults.seed)
        # Remaining answers per rule, consumed in order.
        self.script: list[ScriptRule] = list(faults.script)

    def script_json(self) -> dict[str, Any]:
        return faults_to_json(self.settings, self.script)

    def add_script(self, rules: tuple[ScriptRule, ...]) -> None:
        self.script.extend(rules)

    def _scripted(self, method: str, path: str) -> ScriptedResponse | None:
        for index, rule in enumerate(self.script):
            if rule.method in ("*", method) and fnmatch.fnmatchcase(path, rule.path):
                answer, rest = rule.responses[0], rule.responses[1:]
                if rest:
                    self.script[index] = dataclasses.replace(rule, responses=rest)
                else:
                    del self.script[index]
                return answer
        return None

    def _latency(self) -> float:
        f = self.settings
        jitter = self.rng.uniform(0.0, f.latency_jitter_s) if f.latency_jitter_s else 0.0
        return f.latency_s + jitter

    def decide(self, method: str, path: str) -> FaultAction:
        """The injected fault for one request, scripted answers first, then the random rates."""
        delay = self._latency()
        scripted = self._scripted(method, path)
        if scripted is not None:
            if scripted.kind == "status":
                return FaultAction("status", scripted.status, scripted.retry_after, delay, "script")
            return FaultAction(scripted.kind, delay_s=delay, source="script")
        f, roll = self.settings, self.rng.random
        if f.reset_rate and roll() < f.reset_rate:
            return FaultAction("reset", delay_s=delay, source="reset_rate")
        if f.timeout_rate and roll() < f.timeout_rate:
            return FaultAction("timeout", delay_s=delay, source="timeout_rate")
        if f.error_rate and roll() < f.error_rate:
            return FaultAction("status", f.error_status, None, delay, "error_rate")
        if f.throttle_rate and roll() < f.throttle_rate:
            return FaultAction("status", 429, f.retry_after_s, delay, "throttle_rate")
        if f.throttle_no_retry_after_rate and roll() < f.throttle_no_retry_after_rate:
            return FaultAction("status", 429, None, delay, "throttle_no_retry_after_rate")
        return FaultAction(delay_s=delay)

    def admit(self, workspace_id: str, method: str, now: float) -> bool:
        """Bird's per-workspace limits (GET 50/s, POST 500/s); other writes count as POST."""
        is_read = method in READ_METHODS
        rate = (
            self.settings.rate_limit_get_per_s if is_read else self.settings.rate_limit_post_per_s
        )
        return self.limiter.allow((workspace_id, "GET" if is_read else "POST"), rate, now)
