"""Secrets never leave the bridge: not in logs, metrics, HTTP answers or Kafka records.

``bridge run --role all`` runs as a process at log level debug with known secret values,
wired to the real broker and a Bird simulator that only accepts our access key. We drive
both sides (webhooks good and bad, commands good and bad) and then search everything
the bridge produced for the secrets, raw and base64-encoded. The SASL password cannot be
used against the embedded broker, so its redaction is checked in-process.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiokafka import AIOKafkaConsumer

from bridge import config as config_module
from bridge import logs
from bridge.ingest.verify import sign
from bridge.kafka.clients import topic_partitions
from bridge.kafka.embedded import free_port
from tests.command_helpers import command_client, command_env, create_command, fast_simulator
from tests.ingest_helpers import channel_event
from tests.kafka_cluster import Broker
from tests.kafka_helpers import PUBLIC_URL, broker_env

pytestmark = pytest.mark.integration

BRIDGE = str(Path(sys.executable).parent / "bridge")

ACCESS_KEY = "ak-live-7f3c9e21d4b84a06"
SIGNING_KEY = "whsec-current-5b1e8d3f9a2c"
PREVIOUS_KEY = "whsec-previous-c4a7e0f2b9d1"
SASL_PASSWORD = "sasl-pw-91e3b7c5a2f8d604"
# A channel credential inside a create command: Bird keeps it, nothing else may.
CHANNEL_CREDENTIAL = "chan-cred-0d9f6a3e8b2c"
SECRETS = (ACCESS_KEY, SIGNING_KEY, PREVIOUS_KEY, SASL_PASSWORD, CHANNEL_CREDENTIAL)
TIMESTAMP = "1751742552"


def forms(secret: str) -> list[str]:
    """The secret as it could show up: as is, or base64-encoded (e.g. in a header dump)."""
    return [secret, base64.b64encode(secret.encode()).decode()]


def leaks(text: str | bytes, secrets: Iterable[str] = SECRETS) -> list[str]:
    haystack = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return [secret for secret in secrets if any(f in haystack for f in forms(secret))]


def bridge_env() -> dict[str, str]:
    """The process environment without any BRIDGE_* setting of the machine running tests."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}


# --- the whole bridge as a process -----------------------------------------------------------


@contextmanager
def bridge_process(
    env: Mapping[str, str], out: Path, err: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [BRIDGE, "run", "--role", "all"],
            env={**bridge_env(), **env},
            stdout=stdout,
            stderr=stderr,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def wait_ready(
    session: aiohttp.ClientSession, url: str, process: subprocess.Popen[bytes]
) -> None:
    async with asyncio.timeout(40):
        while True:
            assert process.poll() is None, "the bridge exited"
            try:
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic)
        assert partitions, topic
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        records: list[Any] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in partitions])

        async with asyncio.timeout(15):
            while await behind():
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


def record_text(record: Any) -> bytes:
    """Key, value and headers of a Kafka record, for searching."""
    parts = [record.key or b"", record.value or b""]
    for name, value in record.headers or ():
        parts += [name.encode(), value or b""]
    return b"\n".join(parts)


def webhook_requests() -> list[tuple[str, bytes, dict[str, str], int]]:
    """(what, body, headers, expected status) for every kind of answer the ingest gives."""

    def signed(body: bytes, key: str, **extra: str) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "messagebird-signature": sign(key, TIMESTAMP, PUBLIC_URL, body),
            "messagebird-request-timestamp": TIMESTAMP,
            "messagebird-request-id": str(uuid.uuid4()),
            **extra,
        }

    good = orjson.dumps(channel_event())
    rotated = orjson.dumps(channel_event())
    return [
        ("current key", good, signed(good, SIGNING_KEY), 204),
        ("previous key", rotated, signed(rotated, PREVIOUS_KEY), 204),
        ("wrong key", good, signed(good, "not-the-key"), 401),
        ("no signature", good, {"Content-Type": "application/json"}, 401),
        ("not base64", good, signed(good, SIGNING_KEY, **{"messagebird-signature": "%%"}), 401),
        ("not json", b"{", signed(b"{", SIGNING_KEY), 400),
        ("not an object", b"[1]", signed(b"[1]", SIGNING_KEY), 400),
        ("any type", good, signed(good, SIGNING_KEY, **{"Content-Type": "text/plain"}), 204),
        ("too large", b"{}" * 40_000, signed(b"{}" * 40_000, SIGNING_KEY), 413),
    ]


@asynccontextmanager
async def simulator_for(access_key: str) -> AsyncIterator[str]:
    simulator = fast_simulator(access_keys=(access_key,))
    await simulator.start()
    try:
        yield simulator.url
    finally:
        await simulator.stop()


async def test_no_secret_reaches_logs_metrics_answers_or_topics(
    broker: Broker, tmp_path: Path
) -> None:
    port = free_port()
    async with simulator_for(ACCESS_KEY) as simulator_url:
        env = broker_env(
            broker.bootstrap,
            **{
                **command_env(simulator_url),
                "BRIDGE_BIRD_ACCESS_KEY": ACCESS_KEY,
            },
            BRIDGE_WEBHOOK_SIGNING_KEY=SIGNING_KEY,
            BRIDGE_WEBHOOK_SIGNING_KEY_PREVIOUS=PREVIOUS_KEY,
            BRIDGE_WEBHOOK_MAX_BODY_BYTES="65536",
            BRIDGE_HTTP_PORT=str(port),
            BRIDGE_LOG_LEVEL="debug",
            BRIDGE_LOG_FORMAT="json",
        )
        config = config_module.load(env)
        url = f"http://127.0.0.1:{port}"
        out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
        answers: list[bytes] = []
        with bridge_process(env, out, err) as process:
            async with aiohttp.ClientSession() as session:
                await wait_ready(session, url, process)
                for what, body, headers, expected in webhook_requests():
                    async with session.post(
                        url + "/webhooks/bird", data=body, headers=headers
                    ) as response:
                        assert response.status == expected, what
                        answers.append(await response.read())
                        answers.append(repr(dict(response.headers)).encode())

                async with command_client(config) as client:
                    create = create_command(
                        "Secret-bearing SMS",
                        securityArguments={"messagebird": {"apiKey": CHANNEL_CREDENTIAL}},
                    )
                    invalid = {
                        "commandId": f"cmd-{uuid.uuid4()}",
                        "action": "create",
                        "connector": {"name": "no template"},
                    }
                    missing = {
                        "commandId": f"cmd-{uuid.uuid4()}",
                        "action": "get",
                        "connectorId": str(uuid.uuid4()),
                    }
                    created = await client.run(create)
                    refused = await client.run(invalid)
                    not_found = await client.run(missing)
                    await client.send(b"not json at all", key=b"garbage")
                    assert created["data"]["status"] == "succeeded"
                    assert refused["data"]["error"]["code"] == "invalid_command"
                    assert not_found["data"]["error"]["code"] == "bird_client_error"

                async with session.get(url + "/metrics") as response:
                    metrics = await response.text()
                for probe in ("/healthz", "/readyz"):
                    async with session.get(url + probe) as response:
                        answers.append(await response.read())
            # Let the dead letter of the garbage record land, then stop cleanly.
            dead_letters = await _wait_for_records(broker.bootstrap, config.topics.dead_letter, 2)
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0

    results = await read_all(broker.bootstrap, config.topics.results)
    ledger = await read_all(broker.bootstrap, config.topics.ledger)
    events = await read_all(broker.bootstrap, config.topics.events)
    stdout, stderr = out.read_bytes(), err.read_bytes()

    # What we searched is the real thing, not empty files or topics.
    log_lines = [orjson.loads(line) for line in (stdout + stderr).splitlines() if line.strip()]
    webhook_lines = [line for line in log_lines if line.get("event") == "webhook"]
    assert sorted(line["status"] for line in webhook_lines) == sorted(
        expected for *_, expected in webhook_requests()
    )
    assert any(line.get("event") == "invalid command" for line in log_lines)
    assert 'bridge_webhook_requests_total{outcome="bad_signature"} 3.0' in metrics
    assert len(results) >= 4
    assert len(dead_letters) == 2
    assert len(ledger) >= 3
    assert len(events) == 3

    assert leaks(stdout) == []
    assert leaks(stderr) == []
    assert leaks(metrics) == []
    for answer in answers:
        assert leaks(answer) == []
    for name, records in (
        ("results", results),
        ("dead letters", dead_letters),
        ("ledger", ledger),
        ("events", events),
    ):
        for record in records:
            assert leaks(record_text(record)) == [], name


async def _wait_for_records(bootstrap: str, topic: str, count: int) -> list[Any]:
    async with asyncio.timeout(20):
        while len(records := await read_all(bootstrap, topic)) < count:
            await asyncio.sleep(0.2)
    return records


# --- refused start-up ----------------------------------------------------------------------


def _toml_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


async def test_invalid_configuration_is_reported_without_echoing_secrets(
    tmp_path: Path,
) -> None:
    secrets_env = {
        "BRIDGE_BIRD_ACCESS_KEY": ACCESS_KEY,
        "BRIDGE_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
        "BRIDGE_WEBHOOK_SIGNING_KEY_PREVIOUS": PREVIOUS_KEY,
        "BRIDGE_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        "BRIDGE_WEBHOOK_PUBLIC_URL": PUBLIC_URL,
        "BRIDGE_LOG_LEVEL": "debug",
    }
    cases: list[tuple[list[str], dict[str, str], str]] = [
        (["--role", "all"], {"BRIDGE_HTTP_PORT": "not-a-port"}, "BRIDGE_HTTP_PORT"),
        (
            ["--role", "ingest"],
            {"BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "BRIDGE_KAFKA_SASL_USERNAME",
        ),
        (
            ["--role", "commands"],
            {"BRIDGE_BIRD_ACCESS_KEY": "", "BRIDGE_BIRD_ACCESS_KEY_FILE": "/nonexistent/key"},
            "BRIDGE_BIRD_ACCESS_KEY",
        ),
        (
            ["--role", "all"],
            {
                "BRIDGE_CONFIG_FILE": _toml_file(
                    tmp_path, "broken.toml", f"BRIDGE_WEBHOOK_SIGNING_KEY = {SIGNING_KEY}\n"
                )
            },
            "BRIDGE_CONFIG_FILE",
        ),
        (
            ["--role", "all"],
            {
                "BRIDGE_CONFIG_FILE": _toml_file(
                    tmp_path,
                    "unknown.toml",
                    f'BRIDGE_KAFKA_SASL_PASSWORD = "{SASL_PASSWORD}"\nBRIDGE_NOPE = 1\n',
                )
            },
            "BRIDGE_NOPE",
        ),
        (
            ["--role", "all"],
            {"BRIDGE_WEBHOOK_MAX_BODY_BYTES": "0", "BRIDGE_LOG_FORMAT": "xml"},
            "BRIDGE_LOG_FORMAT",
        ),
    ]

    async def run(args: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
        process = await asyncio.create_subprocess_exec(
            BRIDGE,
            "run",
            *args,
            env={**bridge_env(), **secrets_env, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            stdout, stderr = await process.communicate()
        assert process.returncode is not None
        return process.returncode, stdout, stderr

    outcomes = await asyncio.gather(*(run(args, env) for args, env, _ in cases))
    for (args, env, variable), (code, stdout, stderr) in zip(cases, outcomes, strict=True):
        assert code == 2, (args, env, stderr)
        assert stderr.startswith(b"bridge: invalid configuration"), stderr
        assert variable.encode() in stderr, (variable, stderr)
        assert leaks(stdout + stderr) == [], (variable, stderr)


# --- in-process: config and the log pipeline ------------------------------------------------


def secret_config() -> config_module.Config:
    return config_module.load(
        {
            "BRIDGE_BIRD_ACCESS_KEY": ACCESS_KEY,
            "BRIDGE_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
            "BRIDGE_WEBHOOK_SIGNING_KEY_PREVIOUS": PREVIOUS_KEY,
            "BRIDGE_WEBHOOK_PUBLIC_URL": PUBLIC_URL,
            "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "BRIDGE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "BRIDGE_KAFKA_SASL_USERNAME": "bridge",
            "BRIDGE_KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        }
    )


def test_the_config_never_shows_its_secrets() -> None:
    config = secret_config()
    config.require(["ingest", "commands"])
    shown = [
        repr(config),
        str(config),
        f"{config}",
        repr(config.kafka),
        repr(config.bird),
        repr(config.webhook),
        repr(dataclasses.asdict(config)),
        repr(config.kafka.sasl_password),
        str(config.bird.access_key),
        f"{config.webhook.signing_key}",
    ]
    for text in shown:
        assert leaks(text) == [], text
        assert "**********" in text
    # Everything the redactor needs to know, and nothing more.
    assert sorted(config.secrets()) == sorted(
        [ACCESS_KEY, SIGNING_KEY, PREVIOUS_KEY, SASL_PASSWORD]
    )
    # The values are still there for the code that uses them.
    assert config.kafka.sasl_password is not None
    assert config.kafka.sasl_password.reveal() == SASL_PASSWORD


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
def test_log_lines_redact_secrets_in_every_shape(capfd: pytest.CaptureFixture[str]) -> None:
    config = secret_config()
    logs.configure(fmt="json", level="debug", secrets=config.secrets())
    log = structlog.get_logger("bridge.test")
    log.debug(f"connecting with {SASL_PASSWORD}")
    log.info("bird call", headers={"Authorization": f"AccessKey {ACCESS_KEY}"})
    log.warning("keys", keys=[SIGNING_KEY, (PREVIOUS_KEY,)], raw=SASL_PASSWORD.encode())
    try:
        raise ValueError(f"HMAC key {SIGNING_KEY} rejected")
    except ValueError:
        log.exception("verification failed")
    kafka = logging.getLogger("aiokafka.conn")
    kafka.error("SASL authentication failed for %s with password %s", "bridge", SASL_PASSWORD)
    try:
        raise ConnectionError(f"AccessKey {ACCESS_KEY} refused")
    except ConnectionError:
        logging.getLogger("aiohttp.client").exception("request failed: %r", {"key": ACCESS_KEY})
    captured = capfd.readouterr()
    text = captured.out + captured.err
    lines = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    assert len(lines) == 6
    assert [line.get("level") for line in lines] == [
        "debug",
        "info",
        "warning",
        "error",
        "error",
        "error",
    ]
    assert leaks(text) == []
    assert text.count(logs.REDACTED) >= 8
    # The tracebacks are kept (only the secrets are cut out of them).
    assert "ValueError: HMAC key [redacted] rejected" in text
    assert "ConnectionError: AccessKey [redacted] refused" in text


@pytest.mark.usefixtures("restore_logging")
def test_console_log_lines_redact_secrets_too() -> None:
    stream = io.StringIO()
    logs.configure(fmt="console", level="debug", secrets=secret_config().secrets(), stream=stream)
    structlog.get_logger("bridge.test").info("token", value=f"Bearer {SIGNING_KEY}")
    logging.getLogger("aiokafka").warning("password %s", SASL_PASSWORD)
    text = stream.getvalue()
    assert leaks(text) == []
    assert text.count(logs.REDACTED) == 2
