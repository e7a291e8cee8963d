"""Configuration: environment variables (and an optional TOML file) -> frozen ``Config``.

Pure: ``load`` takes the environment as a mapping. Every problem is collected and
reported at once, each naming its variable; secrets are wrapped in ``Secret`` so no
``repr``, log line or error ever shows them.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bridge.errors import ConfigError
from bridge.secret import SECRET_MIN_LENGTH as SECRET_MIN_LENGTH
from bridge.secret import Secret as Secret
from bridge.workspaces import WORKSPACES_FILE, Workspace, read_workspaces_file

Role = Literal["ingest", "commands"]
ROLES: tuple[Role, ...] = ("ingest", "commands")


def env(
    name: str,
    *,
    choices: Sequence[str] = (),
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    """A dataclass field read from the variable ``BRIDGE_<name>``."""
    return field(
        metadata={
            "env": f"BRIDGE_{name}",
            "choices": tuple(choices),
            "min": minimum,
            "max": maximum,
        }
    )


SASL_MECHANISMS = (
    "PLAIN",
    "SCRAM-SHA-256",
    "SCRAM-SHA-512",
    "OAUTHBEARER",
    "AWS_MSK_IAM",
)
PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = env("KAFKA_BOOTSTRAP_SERVERS")
    client_id: str = env("KAFKA_CLIENT_ID")
    # Broker capabilities: keep on for real Kafka, turn off for the embedded broker.
    enable_idempotence: bool = env("KAFKA_ENABLE_IDEMPOTENCE")
    create_topics: bool = env("KAFKA_CREATE_TOPICS")
    topic_partitions: int = env("KAFKA_TOPIC_PARTITIONS", minimum=1)
    replication_factor: int = env("KAFKA_REPLICATION_FACTOR", minimum=1)
    auto_offset_reset: str = env("KAFKA_AUTO_OFFSET_RESET", choices=("earliest", "latest"))
    consumer_group: str = env("KAFKA_CONSUMER_GROUP")
    session_timeout_ms: int = env("KAFKA_SESSION_TIMEOUT_MS", minimum=1000)
    heartbeat_interval_ms: int = env("KAFKA_HEARTBEAT_INTERVAL_MS", minimum=100)
    request_timeout_ms: int = env("KAFKA_REQUEST_TIMEOUT_MS", minimum=1000)
    compression: str = env("KAFKA_COMPRESSION", choices=("none", "gzip", "snappy", "lz4", "zstd"))
    linger_ms: int = env("KAFKA_LINGER_MS", minimum=0)
    # How long a broker may hold a consumer's fetch while it has no new records. Kafka
    # answers as soon as records arrive; the embedded broker holds it for the whole wait.
    fetch_max_wait_ms: int = env("KAFKA_FETCH_MAX_WAIT_MS", minimum=0, maximum=60_000)
    # The producer's batch per partition. aiokafka sends one request per broker at a time,
    # with one batch per partition: this caps the bytes per partition per round trip. At
    # most the brokers' message.max.bytes (a batch over it is refused whole).
    max_batch_bytes: int = env("KAFKA_MAX_BATCH_BYTES", minimum=16_384, maximum=1_048_576)
    security_protocol: str = env(
        "KAFKA_SECURITY_PROTOCOL", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
    )
    sasl_mechanism: str = env("KAFKA_SASL_MECHANISM", choices=SASL_MECHANISMS)
    sasl_username: str | None = env("KAFKA_SASL_USERNAME")
    sasl_password: Secret | None = env("KAFKA_SASL_PASSWORD")
    ssl_cafile: str | None = env("KAFKA_SSL_CAFILE")
    # Mutual TLS: the client's certificate (chain) and its private key, PEM.
    ssl_certfile: str | None = env("KAFKA_SSL_CERTFILE")
    ssl_keyfile: str | None = env("KAFKA_SSL_KEYFILE")
    ssl_key_password: Secret | None = env("KAFKA_SSL_KEY_PASSWORD")
    ssl_check_hostname: bool = env("KAFKA_SSL_CHECK_HOSTNAME")
    # OAUTHBEARER: an OIDC client-credentials grant at the token endpoint.
    oauth_token_endpoint_url: str | None = env("KAFKA_OAUTH_TOKEN_ENDPOINT_URL")
    oauth_client_id: str | None = env("KAFKA_OAUTH_CLIENT_ID")
    oauth_client_secret: Secret | None = env("KAFKA_OAUTH_CLIENT_SECRET")
    oauth_scope: str | None = env("KAFKA_OAUTH_SCOPE")
    oauth_extensions: str | None = env("KAFKA_OAUTH_EXTENSIONS")
    # AWS_MSK_IAM: the region of the MSK cluster (credentials: the standard AWS chain).
    aws_region: str | None = env("KAFKA_AWS_REGION")

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    def oauth_extension_pairs(self) -> dict[str, str]:
        """``BRIDGE_KAFKA_OAUTH_EXTENSIONS`` (``k=v,k=v``) as a mapping; checked by ``load``."""
        pairs: dict[str, str] = {}
        for item in (self.oauth_extensions or "").split(","):
            if item.strip():
                key, _, value = item.partition("=")
                pairs[key.strip()] = value.strip()
        return pairs

    def problems(self) -> list[str]:
        """Settings that cannot work together, one line each."""
        problems: list[str] = []
        mechanism = f"BRIDGE_KAFKA_SASL_MECHANISM={self.sasl_mechanism}"
        protocol = f"BRIDGE_KAFKA_SECURITY_PROTOCOL={self.security_protocol}"
        sasl_set = self.sasl_username or self.sasl_password is not None
        # PLAIN is the default, so only another mechanism shows it was asked for.
        if not self.sasl and self.sasl_mechanism != "PLAIN":
            problems.append(
                f"{mechanism}: needs BRIDGE_KAFKA_SECURITY_PROTOCOL=SASL_SSL "
                f"(or SASL_PLAINTEXT), not {self.security_protocol}"
            )
        if not self.sasl and sasl_set:
            problems.append(
                f"BRIDGE_KAFKA_SASL_USERNAME / BRIDGE_KAFKA_SASL_PASSWORD: set, but {protocol} "
                "does not use SASL (use SASL_SSL or SASL_PLAINTEXT)"
            )
        if (
            self.sasl
            and self.sasl_mechanism in PASSWORD_MECHANISMS
            and (not self.sasl_username or self.sasl_password is None)
        ):
            problems.append(
                "BRIDGE_KAFKA_SASL_USERNAME / BRIDGE_KAFKA_SASL_PASSWORD: required with "
                f"{protocol} and {mechanism}"
            )
        if self.sasl and self.sasl_mechanism == "OAUTHBEARER":
            for name, value in (
                ("BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL", self.oauth_token_endpoint_url),
                ("BRIDGE_KAFKA_OAUTH_CLIENT_ID", self.oauth_client_id),
                ("BRIDGE_KAFKA_OAUTH_CLIENT_SECRET", self.oauth_client_secret),
            ):
                if not value:
                    problems.append(f"{name}: required with {mechanism}")
        url = self.oauth_token_endpoint_url
        if url and not url.startswith(("https://", "http://")):
            problems.append(
                f"BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL: must be an http(s) URL, got {url!r}"
            )
        for item in (self.oauth_extensions or "").split(","):
            key, sep, _ = item.partition("=")
            if item.strip() and (not sep or not key.strip()):
                problems.append(
                    f"BRIDGE_KAFKA_OAUTH_EXTENSIONS: expected key=value pairs separated by "
                    f"commas, got {item.strip()!r}"
                )
        if self.sasl and self.sasl_mechanism == "AWS_MSK_IAM":
            if self.security_protocol != "SASL_SSL":
                problems.append(f"{mechanism}: MSK accepts IAM only over TLS: set SASL_SSL")
            if not self.aws_region:
                problems.append(f"BRIDGE_KAFKA_AWS_REGION: required with {mechanism}")
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        if self.ssl_keyfile and not self.ssl_certfile:
            problems.append(
                "BRIDGE_KAFKA_SSL_KEYFILE: set without BRIDGE_KAFKA_SSL_CERTFILE (the client "
                "certificate it belongs to)"
            )
        if self.ssl_key_password is not None and not self.ssl_keyfile and not self.ssl_certfile:
            problems.append("BRIDGE_KAFKA_SSL_KEY_PASSWORD: set without BRIDGE_KAFKA_SSL_KEYFILE")
        if not tls:
            for name, value in (
                ("BRIDGE_KAFKA_SSL_CAFILE", self.ssl_cafile),
                ("BRIDGE_KAFKA_SSL_CERTFILE", self.ssl_certfile),
                ("BRIDGE_KAFKA_SSL_KEYFILE", self.ssl_keyfile),
            ):
                if value:
                    problems.append(
                        f"{name}: set, but {protocol} does not use TLS (use SSL or SASL_SSL)"
                    )
        return problems


@dataclass(frozen=True)
class TopicsConfig:
    events: str = env("TOPIC_EVENTS")
    commands: str = env("TOPIC_COMMANDS")
    results: str = env("TOPIC_RESULTS")
    dead_letter: str = env("TOPIC_DEAD_LETTER")
    ledger: str = env("TOPIC_LEDGER")
    channel_state: str = env("TOPIC_CHANNEL_STATE")
    ledger_snapshots: str = env("TOPIC_LEDGER_SNAPSHOTS")


@dataclass(frozen=True)
class BirdConfig:
    api_url: str = env("BIRD_API_URL")
    access_key: Secret | None = env("BIRD_ACCESS_KEY")
    organization_id: str | None = env("BIRD_ORGANIZATION_ID")
    workspace_id: str | None = env("BIRD_WORKSPACE_ID")
    request_timeout_s: float = env("BIRD_REQUEST_TIMEOUT_S", minimum=0.1)
    rate_get_per_s: float = env("BIRD_RATE_GET_PER_S", minimum=0.1)
    rate_post_per_s: float = env("BIRD_RATE_POST_PER_S", minimum=0.1)
    retry_base_s: float = env("BIRD_RETRY_BASE_S", minimum=0.0)
    retry_cap_s: float = env("BIRD_RETRY_CAP_S", minimum=0.0)
    workspaces_file: str | None = env("WORKSPACES_FILE")
    # Filled by ``load``: the file's workspaces, else the one the single-workspace
    # variables describe (when BRIDGE_BIRD_WORKSPACE_ID is set).
    workspaces: tuple[Workspace, ...] = ()

    @property
    def workspaces_from_file(self) -> bool:
        """Several workspaces, each with its own keys (contract 12); otherwise one access
        key and one signing key serve whatever workspace a command or webhook names (v1)."""
        return self.workspaces_file is not None

    @functools.cached_property
    def workspace_ids(self) -> frozenset[str] | None:
        """The workspaces commands may name; None: any (one access key serves all, v1)."""
        return frozenset(w.id for w in self.workspaces) if self.workspaces_from_file else None


@dataclass(frozen=True)
class WebhookConfig:
    signing_key: Secret | None = env("WEBHOOK_SIGNING_KEY")
    signing_key_previous: Secret | None = env("WEBHOOK_SIGNING_KEY_PREVIOUS")
    public_url: str | None = env("WEBHOOK_PUBLIC_URL")
    insecure: bool = env("WEBHOOK_INSECURE")
    max_body_bytes: int = env("WEBHOOK_MAX_BODY_BYTES", minimum=1)
    dedupe_max_entries: int = env("WEBHOOK_DEDUPE_MAX_ENTRIES", minimum=0)
    dedupe_ttl_s: float = env("WEBHOOK_DEDUPE_TTL_S", minimum=0.0)
    publish_timeout_s: float = env("WEBHOOK_PUBLISH_TIMEOUT_S", minimum=0.1)
    retry_after_s: int = env("WEBHOOK_RETRY_AFTER_S", minimum=1)
    ensure_subscriptions: bool = env("ENSURE_SUBSCRIPTIONS")
    read_timeout_s: float = env("WEBHOOK_READ_TIMEOUT_S", minimum=0.1)
    rate_limit_per_s: float = env("WEBHOOK_RATE_LIMIT_PER_S", minimum=0.0)
    trust_forwarded_for: bool = env("WEBHOOK_TRUST_FORWARDED_FOR")


@dataclass(frozen=True)
class CommandsConfig:
    max_in_flight: int = env("COMMANDS_MAX_IN_FLIGHT", minimum=1)
    command_deadline_s: float = env("COMMANDS_DEADLINE_S", minimum=0.1)
    follow_timeout_s: float = env("COMMANDS_FOLLOW_TIMEOUT_S", minimum=0.1)
    follow_interval_s: float = env("COMMANDS_FOLLOW_INTERVAL_S", minimum=0.01)
    commit_interval_s: float = env("COMMANDS_COMMIT_INTERVAL_S", minimum=0.01)
    idempotency_window_s: float = env("COMMANDS_IDEMPOTENCY_WINDOW_S", minimum=60)
    # A replica writes a snapshot of the ledger's index once it has read this many ledger
    # records since the latest snapshot; 0 = no snapshots (every start reads the ledger).
    ledger_snapshot_records: int = env("LEDGER_SNAPSHOT_RECORDS", minimum=0)
    # 0 = off; otherwise one commands replica reconciles with Bird this often.
    reconcile_interval_s: float = env("RECONCILE_INTERVAL_S", minimum=0.0)


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig
    topics: TopicsConfig
    bird: BirdConfig
    webhook: WebhookConfig
    commands: CommandsConfig
    http_host: str = env("HTTP_HOST")
    http_port: int = env("HTTP_PORT", minimum=0, maximum=65535)
    http_header_timeout_s: float = env("HTTP_HEADER_TIMEOUT_S", minimum=0.1)
    http_keepalive_timeout_s: float = env("HTTP_KEEPALIVE_TIMEOUT_S", minimum=0.1)
    http_workers: int = env("HTTP_WORKERS", minimum=1, maximum=64)
    event_loop: str = env("EVENT_LOOP", choices=("asyncio", "uvloop"))
    log_format: str = env("LOG_FORMAT", choices=("json", "console"))
    log_level: str = env("LOG_LEVEL", choices=("debug", "info", "warning", "error"))
    shutdown_timeout_s: float = env("SHUTDOWN_TIMEOUT_S", minimum=0.1)

    @property
    def workspaces(self) -> tuple[Workspace, ...]:
        """Every configured Bird workspace (reconciliation and subscriptions cover each)."""
        return self.bird.workspaces

    def secrets(self) -> list[str]:
        """Every secret value in this config, for redaction."""
        found = [
            value.reveal()
            for section in (self.kafka, self.bird, self.webhook)
            for value in vars(section).values()
            if isinstance(value, Secret) and value.reveal()
        ]
        found.extend(key for workspace in self.workspaces for key in workspace.secrets())
        return list(dict.fromkeys(found))

    def require(self, roles: Sequence[Role]) -> None:
        """Check what a role needs beyond the defaults; raise one ``ConfigError`` for all."""
        problems: list[str] = []
        several = self.bird.workspaces_from_file
        if "ingest" in roles and not self.webhook.insecure:
            if self.webhook.signing_key is None and not several:
                problems.append(
                    "BRIDGE_WEBHOOK_SIGNING_KEY: required to verify Bird's webhooks "
                    "(or set BRIDGE_WEBHOOK_INSECURE=true to accept unsigned requests)"
                )
            if not self.webhook.public_url:
                problems.append(
                    "BRIDGE_WEBHOOK_PUBLIC_URL: required, Bird signs the URL it posts to"
                )
        if "commands" in roles and self.bird.access_key is None and not several:
            problems.append("BRIDGE_BIRD_ACCESS_KEY: required for the commands role")
        if (
            "commands" in roles
            and self.commands.reconcile_interval_s > 0
            and not self.bird.workspace_id
            and not several
        ):
            problems.append(
                "BRIDGE_BIRD_WORKSPACE_ID: required when BRIDGE_RECONCILE_INTERVAL_S > 0 "
                "(the workspace to reconcile)"
            )
        if self.http_workers > 1 and list(roles) != ["ingest"]:
            problems.append(
                "BRIDGE_HTTP_WORKERS: more than one worker serves the ingest role only "
                "(run the commands role in its own process: bridge run --role commands)"
            )
        if self.http_workers > 1 and self.http_port == 0:
            problems.append(
                "BRIDGE_HTTP_WORKERS: more than one worker needs a fixed BRIDGE_HTTP_PORT"
            )
        if self.webhook.ensure_subscriptions and several:
            if not self.webhook.public_url:
                problems.append(
                    "BRIDGE_WEBHOOK_PUBLIC_URL: required when BRIDGE_ENSURE_SUBSCRIPTIONS=true"
                )
        elif self.webhook.ensure_subscriptions:
            for name, value in (
                ("BRIDGE_BIRD_ACCESS_KEY", self.bird.access_key),
                ("BRIDGE_BIRD_ORGANIZATION_ID", self.bird.organization_id),
                ("BRIDGE_BIRD_WORKSPACE_ID", self.bird.workspace_id),
                ("BRIDGE_WEBHOOK_PUBLIC_URL", self.webhook.public_url),
            ):
                if not value:
                    problems.append(f"{name}: required when BRIDGE_ENSURE_SUBSCRIPTIONS=true")
        if problems:
            raise ConfigError(problems)


DEFAULTS: dict[str, str] = {
    "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
    "BRIDGE_KAFKA_CLIENT_ID": "channel-bridge",
    "BRIDGE_KAFKA_ENABLE_IDEMPOTENCE": "true",
    "BRIDGE_KAFKA_CREATE_TOPICS": "true",
    "BRIDGE_KAFKA_TOPIC_PARTITIONS": "6",
    "BRIDGE_KAFKA_REPLICATION_FACTOR": "3",
    "BRIDGE_KAFKA_AUTO_OFFSET_RESET": "earliest",
    "BRIDGE_KAFKA_CONSUMER_GROUP": "channel-bridge",
    "BRIDGE_KAFKA_SESSION_TIMEOUT_MS": "10000",
    "BRIDGE_KAFKA_HEARTBEAT_INTERVAL_MS": "3000",
    "BRIDGE_KAFKA_REQUEST_TIMEOUT_MS": "30000",
    "BRIDGE_KAFKA_COMPRESSION": "none",
    "BRIDGE_KAFKA_LINGER_MS": "0",
    "BRIDGE_KAFKA_FETCH_MAX_WAIT_MS": "500",
    "BRIDGE_KAFKA_MAX_BATCH_BYTES": str(256 * 1024),
    "BRIDGE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "BRIDGE_KAFKA_SASL_MECHANISM": "PLAIN",
    "BRIDGE_KAFKA_SSL_CHECK_HOSTNAME": "true",
    "BRIDGE_TOPIC_EVENTS": "bird.channel-events",
    "BRIDGE_TOPIC_COMMANDS": "bird.connector-commands",
    "BRIDGE_TOPIC_RESULTS": "bird.connector-results",
    "BRIDGE_TOPIC_DEAD_LETTER": "bird.dead-letter",
    "BRIDGE_TOPIC_LEDGER": "bird.connector-ledger",
    "BRIDGE_TOPIC_CHANNEL_STATE": "bird.channel-state",
    "BRIDGE_TOPIC_LEDGER_SNAPSHOTS": "bird.connector-ledger-snapshots",
    "BRIDGE_BIRD_API_URL": "https://api.bird.com",
    "BRIDGE_BIRD_REQUEST_TIMEOUT_S": "10",
    "BRIDGE_BIRD_RATE_GET_PER_S": "50",
    "BRIDGE_BIRD_RATE_POST_PER_S": "500",
    "BRIDGE_BIRD_RETRY_BASE_S": "0.2",
    "BRIDGE_BIRD_RETRY_CAP_S": "10",
    "BRIDGE_WEBHOOK_INSECURE": "false",
    "BRIDGE_WEBHOOK_MAX_BODY_BYTES": str(1024 * 1024),
    "BRIDGE_WEBHOOK_DEDUPE_MAX_ENTRIES": "100000",
    "BRIDGE_WEBHOOK_DEDUPE_TTL_S": str(24 * 3600),
    "BRIDGE_WEBHOOK_PUBLISH_TIMEOUT_S": "5",
    "BRIDGE_WEBHOOK_RETRY_AFTER_S": "5",
    "BRIDGE_ENSURE_SUBSCRIPTIONS": "false",
    "BRIDGE_WEBHOOK_READ_TIMEOUT_S": "10",
    "BRIDGE_WEBHOOK_RATE_LIMIT_PER_S": "0",
    "BRIDGE_WEBHOOK_TRUST_FORWARDED_FOR": "false",
    "BRIDGE_COMMANDS_MAX_IN_FLIGHT": "100",
    "BRIDGE_COMMANDS_DEADLINE_S": "60",
    "BRIDGE_COMMANDS_FOLLOW_TIMEOUT_S": "300",
    "BRIDGE_COMMANDS_FOLLOW_INTERVAL_S": "1",
    "BRIDGE_COMMANDS_COMMIT_INTERVAL_S": "0.5",
    "BRIDGE_COMMANDS_IDEMPOTENCY_WINDOW_S": str(7 * 24 * 3600),
    "BRIDGE_LEDGER_SNAPSHOT_RECORDS": "100000",
    "BRIDGE_RECONCILE_INTERVAL_S": "0",
    "BRIDGE_HTTP_HOST": "0.0.0.0",
    "BRIDGE_HTTP_PORT": "8080",
    "BRIDGE_HTTP_HEADER_TIMEOUT_S": "10",
    "BRIDGE_HTTP_KEEPALIVE_TIMEOUT_S": "75",
    "BRIDGE_HTTP_WORKERS": "1",
    "BRIDGE_EVENT_LOOP": "uvloop",
    "BRIDGE_LOG_FORMAT": "json",
    "BRIDGE_LOG_LEVEL": "info",
    "BRIDGE_SHUTDOWN_TIMEOUT_S": "20",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(raw: str, kind: Any, meta: Mapping[str, Any]) -> Any:
    """Parse one raw string into the annotated type; raise ``ValueError`` with a reason."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if kind is Secret:
        if len(raw) < SECRET_MIN_LENGTH:
            # Never echo the value: it is (meant to be) a secret.
            raise ValueError(f"too short for a secret: at least {SECRET_MIN_LENGTH} characters")
        return Secret(raw)
    value: Any
    if kind is int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}") from None
    elif kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
    else:
        value = raw.strip()
    low, high = meta["min"], meta.get("max")
    if low is not None and high is not None and not low <= value <= high:
        raise ValueError(f"must be in {low}..{high}, got {raw!r}")
    if low is not None and value < low:
        raise ValueError(f"must be at least {low}, got {raw!r}")
    if high is not None and value > high:
        raise ValueError(f"must be at most {high}, got {raw!r}")
    if meta["choices"] and value not in meta["choices"]:
        raise ValueError(f"must be one of {', '.join(meta['choices'])}, got {raw!r}")
    return value


def _read_file_file(name: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {name}_FILE {path!r}: {exc.strerror}") from None


def _section(cls: type[Any], source: Mapping[str, str], problems: list[str]) -> Any:
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f.metadata.get("env")
        if name is None:
            continue
        kind = hints[f.name]
        optional = type(None) in typing.get_args(kind)
        raw = source.get(name)
        file_path = source.get(f"{name}_FILE")
        try:
            if file_path:
                raw = _read_file_file(name, file_path)
            if raw is None or (raw == "" and optional):
                if optional:
                    values[f.name] = None
                    continue
                raw = DEFAULTS[name]
            values[f.name] = _parse(raw, kind, f.metadata)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        return None
    return cls(**values)


def read_file(path: str | Path) -> dict[str, str]:
    """Read a TOML file of ``BRIDGE_*`` keys (the same names as the environment)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"BRIDGE_CONFIG_FILE: cannot read {str(path)!r}: {exc}"]) from None
    problems = [f"{path}: unknown key {k!r}" for k in data if not _known(k)]
    if problems:
        raise ConfigError(problems)
    return {k: _as_text(v) for k, v in data.items()}


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _known(key: str) -> bool:
    names = DEFAULTS.keys() | _optional_names()
    return key in names or key.removesuffix("_FILE") in names


def _optional_names() -> set[str]:
    names: set[str] = set()
    for cls in (KafkaConfig, TopicsConfig, BirdConfig, WebhookConfig, CommandsConfig, Config):
        names.update(f.metadata["env"] for f in dataclasses.fields(cls) if "env" in f.metadata)
    return names


# BRIDGE_* variables read outside ``Config``.
OTHER_NAMES = frozenset({"BRIDGE_CONFIG_FILE", "BRIDGE_SIMULATOR_ADMIN_TOKEN"})


def known_names() -> frozenset[str]:
    """Every ``BRIDGE_*`` variable something reads: settings, their ``_FILE`` variants, others."""
    settings = _optional_names()
    return frozenset(settings | {f"{name}_FILE" for name in settings} | OTHER_NAMES)


def unknown_settings(environ: Mapping[str, str]) -> list[str]:
    """One warning per ``BRIDGE_*`` variable nothing reads, with the closest known name."""
    known = known_names()
    warnings = []
    for name in sorted(k for k in environ if k.startswith("BRIDGE_") and k not in known):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{name} is not a known setting{hint}")
    return warnings


def load(environ: Mapping[str, str]) -> Config:
    """Build the config from ``environ`` (over ``BRIDGE_CONFIG_FILE`` when set)."""
    source: dict[str, str] = {}
    if environ.get("BRIDGE_CONFIG_FILE"):
        source.update(read_file(environ["BRIDGE_CONFIG_FILE"]))
    source.update({k: v for k, v in environ.items() if k.startswith("BRIDGE_")})
    problems: list[str] = []
    sections = {
        "kafka": _section(KafkaConfig, source, problems),
        "topics": _section(TopicsConfig, source, problems),
        "bird": _section(BirdConfig, source, problems),
        "webhook": _section(WebhookConfig, source, problems),
        "commands": _section(CommandsConfig, source, problems),
    }
    top: dict[str, Any] = {}
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        name = f.metadata.get("env")
        if name is None:
            continue
        try:
            top[f.name] = _parse(source.get(name, DEFAULTS[name]), hints[f.name], f.metadata)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
    from_file = _workspaces_file(source, problems)
    if problems:
        raise ConfigError(problems)
    sections["bird"] = _with_workspaces(sections["bird"], sections["webhook"], from_file)
    config = Config(**sections, **top)
    if config.kafka.problems():
        raise ConfigError(config.kafka.problems())
    return config


# Single-workspace variables that the workspaces file replaces (its tables hold them).
_PER_WORKSPACE_NAMES = (
    "BRIDGE_BIRD_ACCESS_KEY",
    "BRIDGE_BIRD_ORGANIZATION_ID",
    "BRIDGE_WEBHOOK_SIGNING_KEY",
    "BRIDGE_WEBHOOK_SIGNING_KEY_PREVIOUS",
)


def _workspaces_file(
    source: Mapping[str, str], problems: list[str]
) -> tuple[Workspace, ...] | None:
    """The workspaces of ``BRIDGE_WORKSPACES_FILE`` (None when unset); its problems and
    those of variables it conflicts with go to ``problems``."""
    path = source.get(WORKSPACES_FILE)
    if not path:
        return None
    problems.extend(
        f"{name}: not used with {WORKSPACES_FILE}; set it per workspace in that file"
        for name in _PER_WORKSPACE_NAMES
        if source.get(name) or source.get(f"{name}_FILE")
    )
    try:
        workspaces = read_workspaces_file(path)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    default = source.get("BRIDGE_BIRD_WORKSPACE_ID")
    if default and default not in {w.id for w in workspaces}:
        problems.append(
            f"BRIDGE_BIRD_WORKSPACE_ID: {default!r} is not a workspace of {WORKSPACES_FILE}"
        )
    return workspaces


def _with_workspaces(
    bird: BirdConfig, webhook: WebhookConfig, from_file: tuple[Workspace, ...] | None
) -> BirdConfig:
    if from_file is not None:
        return dataclasses.replace(bird, workspaces=from_file)
    if not bird.workspace_id:
        return bird
    single = Workspace(
        id=bird.workspace_id,
        organization_id=bird.organization_id,
        access_key=bird.access_key,
        signing_key=webhook.signing_key,
        signing_key_previous=webhook.signing_key_previous,
    )
    return dataclasses.replace(bird, workspaces=(single,))
