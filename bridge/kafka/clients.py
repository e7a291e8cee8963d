"""aiokafka settings built from ``KafkaConfig`` (pure), and topic creation (I/O)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import murmur2

from bridge.config import KafkaConfig, TopicsConfig
from bridge.errors import ConfigError
from bridge.kafka.auth import token_provider
from bridge.kafka.size import MAX_RECORD_SIZE
from bridge.tasks import raise_if_cancelling

log = structlog.get_logger("bridge.kafka")

_TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS

# The command ledger keeps the latest state per commandId (compaction) for 30 days
# (deletion): the window in which a redelivered command is recognised.
LEDGER_TOPIC_CONFIG = {
    "cleanup.policy": "compact,delete",
    "retention.ms": str(30 * 24 * 3600 * 1000),
}

# The channel state keeps the latest state per channel id forever: compaction, no time
# retention (contract section 10).
CHANNEL_STATE_TOPIC_CONFIG = {"cleanup.policy": "compact", "retention.ms": "-1"}


def ssl_context(kafka: KafkaConfig) -> ssl.SSLContext:
    """TLS to the brokers: the CA bundle (or the system's), the client certificate for
    mutual TLS, hostname checking unless turned off. ``ConfigError`` names the file."""
    try:
        context = ssl.create_default_context(cafile=kafka.ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [f"BRIDGE_KAFKA_SSL_CAFILE: cannot load {kafka.ssl_cafile!r}: {_reason(exc)}"]
        ) from None
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile:
        secret = kafka.ssl_key_password
        try:
            # A callable, never None: OpenSSL would prompt on the terminal for a missing one.
            context.load_cert_chain(
                kafka.ssl_certfile, kafka.ssl_keyfile, lambda: secret.reveal() if secret else ""
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                [
                    "BRIDGE_KAFKA_SSL_CERTFILE / BRIDGE_KAFKA_SSL_KEYFILE: cannot load the "
                    f"client certificate {kafka.ssl_certfile!r}: {_reason(exc)} (a wrong "
                    "BRIDGE_KAFKA_SSL_KEY_PASSWORD, or a key that does not match?)"
                ]
            ) from None
    return context


def _reason(exc: OSError | ssl.SSLError) -> str:
    return (
        str(exc.strerror or exc.reason or exc)
        if isinstance(exc, ssl.SSLError)
        else str(exc.strerror or exc)
    )


def common_settings(kafka: KafkaConfig) -> dict[str, Any]:
    """What every client the bridge opens shares: producer, consumers, admin, the CLI tools."""
    settings: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        settings["ssl_context"] = ssl_context(kafka)
    if kafka.sasl:
        if kafka.sasl_mechanism in ("OAUTHBEARER", "AWS_MSK_IAM"):
            # MSK IAM is OAUTHBEARER with a signed token (AWS's own mechanism name is for
            # the Java client's login module; the broker accepts both).
            settings["sasl_mechanism"] = "OAUTHBEARER"
            settings["sasl_oauth_token_provider"] = token_provider(kafka)
        else:
            settings["sasl_mechanism"] = kafka.sasl_mechanism
            settings["sasl_plain_username"] = kafka.sasl_username
            if kafka.sasl_password is not None:
                settings["sasl_plain_password"] = kafka.sasl_password.reveal()
    return settings


# ApiVersions v0, correlation id 1, no client id: any Kafka broker answers it.
_API_VERSIONS = (10).to_bytes(4, "big") + bytes.fromhex("0012000000000001ffff")
_TLS_REFUSED_CERTIFICATE = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "DECRYPT")


def where(kafka: KafkaConfig) -> str:
    return f"Kafka at {kafka.bootstrap_servers} (BRIDGE_KAFKA_BOOTSTRAP_SERVERS)"


class Diagnosis(NamedTuple):
    reason: str  # "" when the broker accepts this config
    reached: bool  # a broker answers at all (else: down, or the wrong address)


async def diagnose(kafka: KafkaConfig, *, timeout: float = 5.0) -> Diagnosis:
    """Why the first bootstrap server refuses this config, in one line.

    aiokafka reports every failed start as "Unable to bootstrap": a refused client
    certificate, a wrong password and a dead broker look alike. This asks once more, by
    layer: TCP and TLS with the same context, then SASL with the same credentials."""
    host, _, port_text = kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    host = host.strip("[]") or "localhost"
    port = int(port_text) if port_text.isdigit() else 9092
    settings = common_settings(kafka)
    context: ssl.SSLContext | None = settings.get("ssl_context")
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context else None
            )
            writer.write(_API_VERSIONS)
            await writer.drain()
            await reader.readexactly(4)
    except ssl.SSLCertVerificationError as exc:
        return _reached(
            f"the broker's TLS certificate is not trusted: {exc.verify_message} (check "
            "BRIDGE_KAFKA_SSL_CAFILE and BRIDGE_KAFKA_SSL_CHECK_HOSTNAME)"
        )
    except ssl.SSLError as exc:
        reason = str(exc.reason or exc)
        if "CERTIFICATE_REQUIRED" in reason or (
            not kafka.ssl_certfile and "BAD_CERTIFICATE" in reason
        ):
            return _reached(
                f"the broker requires a TLS client certificate ({reason}): set "
                "BRIDGE_KAFKA_SSL_CERTFILE and BRIDGE_KAFKA_SSL_KEYFILE"
            )
        if any(code in reason for code in _TLS_REFUSED_CERTIFICATE):
            return _reached(
                f"the broker refused the TLS client certificate {kafka.ssl_certfile!r} "
                f"({reason}): is it signed by a CA the brokers trust (ssl.truststore)?"
            )
        return _reached(f"TLS handshake failed: {reason}")
    except TimeoutError:
        return Diagnosis(
            f"no answer in {timeout:g} s (a TLS listener spoken to without TLS?)", True
        )
    except asyncio.IncompleteReadError:
        tls = "" if context else " (a TLS listener? set BRIDGE_KAFKA_SECURITY_PROTOCOL)"
        return Diagnosis(f"the broker closed the connection without an answer{tls}", True)
    except OSError as exc:
        return Diagnosis(str(exc.strerror or exc), reached=False)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    if kafka.sasl:
        options = {k: v for k, v in settings.items() if k != "bootstrap_servers"}
        try:
            async with asyncio.timeout(timeout):
                connection = await create_conn(host, port, **options)
            connection.close()
        except KafkaError as exc:
            mechanism = kafka.sasl_mechanism
            return _reached(f"SASL {mechanism} authentication failed: {exc}")
        except (OSError, TimeoutError) as exc:
            return _reached(f"SASL handshake failed: {type(exc).__name__}: {exc}")
    return Diagnosis("", reached=True)


def _reached(reason: str) -> Diagnosis:
    return Diagnosis(reason, reached=True)


async def explain(kafka: KafkaConfig, exc: BaseException) -> str:
    """One line for a client that could not start: aiokafka's words, or the cause behind
    its "Unable to bootstrap" when another look finds it."""
    text = str(exc) or repr(exc)
    if isinstance(exc, KafkaConnectionError) and "bootstrap" in text:
        with contextlib.suppress(Exception):  # the diagnosis must never hide the failure
            why = await diagnose(kafka)
            if why.reason:
                return f"cannot connect to {where(kafka)}: {why.reason}"
    return text


class CachedPartitioner:
    """Kafka's default key -> partition mapping (murmur2, as the Java client), remembered per
    key: channel ids repeat, and aiokafka's murmur2 is pure Python."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._cache: dict[tuple[bytes, int], int] = {}

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        slot = (key, len(all_partitions))
        index = self._cache.get(slot)
        if index is None:
            if len(self._cache) >= self.max_keys:
                self._cache.clear()
            index = self._cache[slot] = (murmur2(key) & 0x7FFFFFFF) % len(all_partitions)
        return all_partitions[index]


def producer_settings(kafka: KafkaConfig, *, partitioner: Any = None) -> dict[str, Any]:
    """acks=all always: a record counts as published only once every in-sync replica has it.
    ``partitioner``: the default caches each key's partition (channel ids repeat)."""
    return {
        **common_settings(kafka),
        "partitioner": partitioner if partitioner is not None else CachedPartitioner(),
        "acks": "all",
        "enable_idempotence": kafka.enable_idempotence,
        "compression_type": None if kafka.compression == "none" else kafka.compression,
        "linger_ms": kafka.linger_ms,
        "max_batch_size": kafka.max_batch_bytes,
        # Kafka's own default message.max.bytes; enforced client-side for brokers without one.
        "max_request_size": MAX_RECORD_SIZE,
    }


def consumer_settings(kafka: KafkaConfig, *, group: str | None) -> dict[str, Any]:
    settings = {
        **common_settings(kafka),
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": kafka.auto_offset_reset,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
        "isolation_level": "read_uncommitted",
    }
    # JoinGroup is held for up to session_timeout/2: a shorter request timeout loops forever.
    settings["request_timeout_ms"] = max(kafka.request_timeout_ms, kafka.session_timeout_ms + 5000)
    return settings


async def ensure_topics(
    kafka: KafkaConfig,
    names: Iterable[str],
    *,
    compacted: Iterable[str] = (),
    configs: Mapping[str, Mapping[str, str]] | None = None,
    partitions: Mapping[str, int] | None = None,
) -> None:
    """Create the topics if missing (never rely on auto-creation); existing ones are kept.
    ``compacted`` topics get the ledger's config, ``configs`` names others by topic;
    ``partitions`` a topic's own partition count (else BRIDGE_KAFKA_TOPIC_PARTITIONS)."""
    compacted = set(compacted)
    configs = configs or {}
    partitions = partitions or {}
    admin = AIOKafkaAdminClient(**common_settings(kafka))
    await admin.start()
    try:
        topics = [
            NewTopic(
                name=name,
                num_partitions=partitions.get(name, kafka.topic_partitions),
                replication_factor=kafka.replication_factor,
                topic_configs=dict(
                    configs.get(name, LEDGER_TOPIC_CONFIG if name in compacted else {})
                ),
            )
            for name in dict.fromkeys(names)
        ]
        response = await admin.create_topics(topics)
        for name, code, *_ in getattr(response, "topic_errors", []):
            if code not in (0, _TOPIC_EXISTS):
                raise RuntimeError(
                    f"cannot create Kafka topic {name!r}: Kafka error code {code} (check "
                    "BRIDGE_KAFKA_REPLICATION_FACTOR and BRIDGE_KAFKA_TOPIC_PARTITIONS, or "
                    "create the topics yourself and set BRIDGE_KAFKA_CREATE_TOPICS=false)"
                )
            log.info("topic ready", topic=name, created=code == 0)
    finally:
        await admin.close()


async def topic_partitions(
    consumer: AIOKafkaConsumer, topic: str, *, wait_s: float = 0.0
) -> list[TopicPartition]:
    """The partitions of ``topic`` from fresh metadata of every topic; [] while it does not
    exist (asked again every 0.1 s for up to ``wait_s``: a topic just created at start).
    A consumer's own metadata holds only the topics it tracks: Kafka answers the empty
    topic list aiokafka starts with by no topics (the embedded broker by all)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        cluster = await consumer._client.fetch_all_metadata()
        found = sorted(cluster.partitions_for_topic(topic) or ())
        if found or loop.time() >= deadline:
            return [TopicPartition(topic, p) for p in found]
        await asyncio.sleep(0.1)


def all_topics(topics: TopicsConfig) -> list[str]:
    return [
        topics.events,
        topics.commands,
        topics.results,
        topics.dead_letter,
        topics.ledger,
        topics.channel_state,
        topics.ledger_snapshots,
    ]


# How long a stop waits for a client's start in progress to settle before cancelling it.
START_SETTLE_S = 2.0


async def stop_client(client: Any) -> None:
    """``await client.stop()`` (``close()`` for an admin or bare client), then raise the
    cancellation of the current task that aiokafka may have swallowed (``bridge.tasks``)."""
    stop = getattr(client, "stop", None) or client.close
    await stop()
    raise_if_cancelling()


async def start_client(client: Any) -> None:
    """``await client.start()`` for an aiokafka consumer or producer that is stopped again
    when the start fails or is cancelled (a stop during start-up), so no socket is left open.

    A cancel first lets the start settle for up to ``START_SETTLE_S``: aiokafka's bootstrap
    leaks its connection when cancelled in the middle of its metadata request."""
    starting = asyncio.ensure_future(client.start())
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(starting, START_SETTLE_S)
        await stop_to_the_end(client)
        raise
    except BaseException:
        await stop_to_the_end(client)
        raise


async def stop_to_the_end(client: Any) -> None:
    """``await client.stop()``, never cut short: the cleanup of a task being stopped.

    ``bridge.tasks.stop_task`` cancels a task again while it runs on, and a consumer that
    joined its group takes a while to leave it; a stop cancelled half-way leaves its
    client's connections open, with its metadata task running. Here further cancels wait
    for the stop, and it then raises the cancellation they asked for. A failed stop is
    dropped: the client is being given up either way."""
    stopping = asyncio.ensure_future(client.stop())
    while not stopping.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(stopping)
    if not stopping.cancelled():
        stopping.exception()  # retrieved: a failed stop is not reported as never retrieved
    raise_if_cancelling()
