"""The bridge on a Kafka that wants credentials: mutual TLS, SASL/SCRAM-SHA-512 and
OAUTHBEARER (Kafka's own OIDC validation against a local JWKS / token endpoint).

One Apache Kafka node for the module, with a listener per mode next to its PLAINTEXT one
(through which the tests' own clients read and write). Each mode: a webhook becomes a
record and a command gets its result through the secured listener; a wrong certificate,
password or client secret keeps /readyz at 503 with one clear log line, never a hang.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog

from bridge.config import Config, Secret
from tests.auth_helpers import OidcProvider, issue, make_ca
from tests.bridge_helpers import RunningBridge, running_bridge
from tests.command_helpers import command_client, command_env, create_command, fast_simulator
from tests.conftest import _kafka_or_skip
from tests.ingest_helpers import channel_event, delivery
from tests.integration.test_startup_errors import assert_one_line, run_bridge
from tests.kafka_cluster import KafkaCluster
from tests.kafka_helpers import bridge_config, read_topic, register_broker

pytestmark = pytest.mark.integration

SCRAM_USER = "bridge"
SCRAM_PASSWORD = "scram-secret-1"
OAUTH_CLIENT = "bridge-client"
OAUTH_SECRET = "oauth-client-secret-1"
VALIDATOR = "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"


@dataclass
class Secured:
    cluster: KafkaCluster
    certs: Path
    oidc: OidcProvider

    def scram_env(self, password: str = SCRAM_PASSWORD) -> dict[str, str]:
        return {
            "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "BRIDGE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "BRIDGE_KAFKA_SASL_USERNAME": SCRAM_USER,
            "BRIDGE_KAFKA_SASL_PASSWORD": password,
        }

    def oauth_env(self, secret: str = OAUTH_SECRET) -> dict[str, str]:
        return {
            "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "BRIDGE_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
            "BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL": f"{self.oidc.url}/token",
            "BRIDGE_KAFKA_OAUTH_CLIENT_ID": OAUTH_CLIENT,
            "BRIDGE_KAFKA_OAUTH_CLIENT_SECRET": secret,
            "BRIDGE_KAFKA_OAUTH_SCOPE": "kafka",
            "BRIDGE_KAFKA_OAUTH_EXTENSIONS": "logicalCluster=lkc-test",
        }

    def mtls_env(self, client: str = "client") -> dict[str, str]:
        return {
            "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "BRIDGE_KAFKA_SSL_CAFILE": str(self.certs / "ca.pem"),
            "BRIDGE_KAFKA_SSL_CERTFILE": str(self.certs / f"{client}.pem"),
            "BRIDGE_KAFKA_SSL_KEYFILE": str(self.certs / f"{client}.key"),
        }


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    classpath = _kafka_or_skip()
    directory = tmp_path_factory.mktemp("kafka-auth")
    certs = directory / "certs"
    ca = make_ca("bridge test CA").write(certs, "ca")
    issue(ca, "kafka broker", server=True).write(certs, "broker")
    (certs / "broker-keystore.pem").write_bytes(
        (certs / "broker.key").read_bytes() + (certs / "broker.pem").read_bytes()
    )
    issue(ca, "channel-bridge", server=False).write(certs, "client", password="key-password-1")
    other_ca = make_ca("someone else's CA")
    issue(other_ca, "channel-bridge", server=False).write(certs, "stranger")
    oidc = OidcProvider(OAUTH_CLIENT, OAUTH_SECRET)
    oidc.start()
    jwks = f"{oidc.url}/jwks"
    settings = {
        "listener.name.mtls.ssl.keystore.type": "PEM",
        "listener.name.mtls.ssl.keystore.location": str(certs / "broker-keystore.pem"),
        "listener.name.mtls.ssl.truststore.type": "PEM",
        "listener.name.mtls.ssl.truststore.location": str(certs / "ca.pem"),
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.sasl.sasl.enabled.mechanisms": "SCRAM-SHA-512,OAUTHBEARER",
        "listener.name.sasl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "listener.name.sasl.oauthbearer.sasl.jaas.config": (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
        ),
        "listener.name.sasl.oauthbearer.sasl.server.callback.handler.class": VALIDATOR,
        "sasl.oauthbearer.jwks.endpoint.url": jwks,
        "sasl.oauthbearer.expected.audience": oidc.audience,
        "sasl.oauthbearer.expected.issuer": oidc.issuer,
        # A session lasts as long as its token: a client that does not re-authenticate
        # (aiokafka) is disconnected then, and must connect again with a fresh token.
        "listener.name.sasl.oauthbearer.connections.max.reauth.ms": "3600000",
    }
    cluster = KafkaCluster(
        directory / "kafka",
        1,
        settings=settings,
        classpath=classpath,
        listeners={"MTLS": "SSL", "SASL": "SASL_PLAINTEXT"},
        # Kafka 4 fetches OAuth URLs only from an allow-list (a JVM system property).
        jvm_options=(f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={jwks}",),
        format_args=("--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={SCRAM_PASSWORD}]"),
    )
    try:
        cluster.start()
        register_broker(cluster)
        yield Secured(cluster, certs, oidc)
        cluster.stop()
    finally:
        oidc.stop()


def plain_twin(config: Config, cluster: KafkaCluster) -> Config:
    """The same topics through the PLAINTEXT listener: the tests' own reader and writer."""
    kafka = dataclasses.replace(
        config.kafka,
        bootstrap_servers=cluster.bootstrap,
        security_protocol="PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username=None,
        sasl_password=None,
        ssl_cafile=None,
        ssl_certfile=None,
        ssl_keyfile=None,
        ssl_key_password=None,
    )
    return dataclasses.replace(config, kafka=kafka)


async def produces_and_consumes(secured: Secured, listener: str, env: dict[str, str]) -> None:
    """A webhook becomes a record, and a command its results, through ``listener``."""
    simulator = fast_simulator()
    await simulator.start()
    try:
        bootstrap = secured.cluster.listener_bootstrap(listener)
        config = bridge_config(bootstrap, **command_env(simulator.url), **env)
        plain = plain_twin(config, secured.cluster)
        body = channel_event("channel.created", status="pending")
        raw, headers = delivery(body, request_id=f"req-{listener}")
        async with (
            running_bridge(config, ["ingest", "commands"]) as app,
            aiohttp.ClientSession() as session,
            command_client(plain) as client,
        ):
            async with session.post(app.url + "/webhooks/bird", data=raw, headers=headers) as r:
                assert r.status == 204, await r.text()
            command = create_command()
            final = await client.run(command, timeout=30)
            assert final["data"]["status"] == "succeeded", final
            async with session.get(app.url + "/readyz") as r:
                assert r.status == 200
        records = await read_topic(secured.cluster.bootstrap, config.topics.events, expect=1)
        assert [orjson.loads(r.value)["id"] for r in records] == [f"req-{listener}"]
    finally:
        await simulator.stop()


@asynccontextmanager
async def refused(
    config: Config,
) -> AsyncIterator[tuple[RunningBridge, list[MutableMapping[str, Any]]]]:
    """The bridge with credentials Kafka refuses: it serves, but is not ready."""
    with structlog.testing.capture_logs() as logs:
        async with running_bridge(config, ["ingest"], wait_ready=False) as app:
            yield app, logs


async def not_ready_with_one_reason(
    config: Config, *expected: str, seconds: float = 8.0
) -> list[str]:
    """/readyz stays 503 for ``seconds`` and each retry logs one line naming the cause."""
    async with refused(config) as (app, logs), aiohttp.ClientSession() as session:
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while loop.time() < until:
            async with asyncio.timeout(2), session.get(app.url + "/readyz") as response:
                assert response.status == 503
            await asyncio.sleep(0.25)
        lines = [
            str(entry.get("error"))
            for entry in logs
            if entry.get("event") == "kafka not ready, retrying"
        ]
    assert lines, logs
    for line in lines:
        assert "\n" not in line
        for text in expected:
            assert text in line, line
    return lines


# --- mutual TLS --------------------------------------------------------------------------


async def test_mtls_produces_and_consumes(secured: Secured) -> None:
    env = {**secured.mtls_env(), "BRIDGE_KAFKA_SSL_KEY_PASSWORD": "key-password-1"}
    await produces_and_consumes(secured, "MTLS", env)


async def test_mtls_with_a_certificate_from_another_ca_is_refused(secured: Secured) -> None:
    bootstrap = secured.cluster.listener_bootstrap("MTLS")
    config = bridge_config(bootstrap, **secured.mtls_env("stranger"))
    lines = await not_ready_with_one_reason(
        config, bootstrap, "refused the TLS client certificate", "stranger.pem"
    )
    print(lines[-1])


async def test_mtls_without_a_client_certificate_is_refused(secured: Secured) -> None:
    bootstrap = secured.cluster.listener_bootstrap("MTLS")
    env = {
        "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "BRIDGE_KAFKA_SSL_CAFILE": str(secured.certs / "ca.pem"),
    }
    lines = await not_ready_with_one_reason(
        bridge_config(bootstrap, **env), bootstrap, "requires a TLS client certificate"
    )
    print(lines[-1])


def test_bridge_command_names_the_refused_certificate(secured: Secured) -> None:
    bootstrap = secured.cluster.listener_bootstrap("MTLS")
    env = {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, **secured.mtls_env("stranger")}
    result = run_bridge("command", "list", env=env)
    assert_one_line(result, f"cannot connect to Kafka at {bootstrap}", "stranger.pem")


def test_bridge_run_with_a_wrong_key_password_stops_at_once(secured: Secured) -> None:
    env = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": secured.cluster.listener_bootstrap("MTLS"),
        "BRIDGE_WEBHOOK_INSECURE": "true",
        **secured.mtls_env(),
        "BRIDGE_KAFKA_SSL_KEY_PASSWORD": "not-the-key-password",
    }
    result = run_bridge("run", "--role", "ingest", env=env)
    assert_one_line(result, "BRIDGE_KAFKA_SSL_CERTFILE", "client.pem")
    assert result.returncode == 2
    assert "not-the-key-password" not in result.stderr


# --- SASL/SCRAM-SHA-512 ------------------------------------------------------------------


async def test_scram_produces_and_consumes(secured: Secured) -> None:
    await produces_and_consumes(secured, "SASL", secured.scram_env())


async def test_scram_with_a_wrong_password_is_refused(secured: Secured) -> None:
    bootstrap = secured.cluster.listener_bootstrap("SASL")
    config = bridge_config(bootstrap, **secured.scram_env("not-the-password"))
    lines = await not_ready_with_one_reason(
        config, bootstrap, "SASL SCRAM-SHA-512 authentication failed", "invalid credentials"
    )
    assert not any("not-the-password" in line for line in lines)


# --- OAUTHBEARER -------------------------------------------------------------------------


async def test_oauthbearer_produces_and_consumes_on_one_token(secured: Secured) -> None:
    before = secured.oidc.requests["token"]
    await produces_and_consumes(secured, "SASL", secured.oauth_env())
    # Producer, admin, command consumer and ledger readers: one token serves them all.
    assert secured.oidc.requests["token"] - before == 1
    assert secured.oidc.scopes[-1] == "kafka"


async def test_oauthbearer_with_a_wrong_client_secret_is_refused(secured: Secured) -> None:
    bootstrap = secured.cluster.listener_bootstrap("SASL")
    config = bridge_config(bootstrap, **secured.oauth_env("not-the-client-secret"))
    lines = await not_ready_with_one_reason(
        config, bootstrap, "refused the token request: HTTP 401 (invalid_client)", "/token"
    )
    assert not any("not-the-client-secret" in line for line in lines)


async def test_oauthbearer_token_forged_with_another_key_is_refused(secured: Secured) -> None:
    """Kafka checks the signature against the JWKS: a token the provider did not sign fails."""
    from bridge.kafka import auth

    bootstrap = secured.cluster.listener_bootstrap("SASL")
    config = bridge_config(bootstrap, **secured.oauth_env())
    forged = secured.oidc.jwt(OAUTH_CLIENT, lifetime_s=600, key=make_ca("forger").key)
    provider = auth.token_provider(config.kafka)
    provider._token = auth.Token(Secret(forged), time.monotonic(), 600.0)
    await not_ready_with_one_reason(
        config, bootstrap, "SASL OAUTHBEARER authentication failed", "SaslAuthenticationFailed"
    )


async def test_oauthbearer_connection_survives_token_rollover(secured: Secured) -> None:
    """Tokens live 6 s; the broker ends each session when its token expires. The bridge
    keeps publishing across several tokens, each fetched before the last one expired."""
    secured.oidc.lifetime_s = 6
    try:
        bootstrap = secured.cluster.listener_bootstrap("SASL")
        config = bridge_config(bootstrap, **secured.oauth_env())
        before = secured.oidc.requests["token"]
        sent: list[str] = []
        async with (
            running_bridge(config, ["ingest"]) as app,
            aiohttp.ClientSession() as session,
        ):
            loop = asyncio.get_running_loop()
            until = loop.time() + 16
            while loop.time() < until:
                request_id = f"req-rollover-{len(sent)}"
                raw, headers = delivery(channel_event(), request_id=request_id)
                async with session.post(app.url + "/webhooks/bird", data=raw, headers=headers) as r:
                    assert r.status == 204, (request_id, await r.text())
                sent.append(request_id)
                await asyncio.sleep(0.5)
        fetched = secured.oidc.requests["token"] - before
        records = await read_topic(
            secured.cluster.bootstrap, config.topics.events, expect=len(sent)
        )
        published = [orjson.loads(r.value)["id"] for r in records]
        assert set(published) == set(sent), sorted(set(sent) - set(published))
        assert len(published) == len(sent)  # the idempotent producer's retries: no duplicate
        # 16 s of 6 s tokens: the first, then one per session the broker ended.
        assert fetched >= 3, fetched
    finally:
        secured.oidc.lifetime_s = 3600
