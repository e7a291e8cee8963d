"""Kafka security settings: impossible combinations refused in one line each, the TLS
context built from them, and every client sharing them."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest

from bridge.config import load
from bridge.errors import ConfigError
from bridge.kafka.auth import MskIamTokenProvider, OAuthTokenProvider
from bridge.kafka.clients import common_settings, consumer_settings, producer_settings
from tests.auth_helpers import issue, make_ca

ROOT = Path(__file__).parents[2]

OAUTH = {
    "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "BRIDGE_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
    "BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL": "https://login.example.org/oauth2/token",
    "BRIDGE_KAFKA_OAUTH_CLIENT_ID": "bridge",
    "BRIDGE_KAFKA_OAUTH_CLIENT_SECRET": "client-secret-1",
}


def problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(environ)
    return caught.value.problems


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {**OAUTH, "BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL": ""},
            [
                "BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL: required with "
                "BRIDGE_KAFKA_SASL_MECHANISM=OAUTHBEARER"
            ],
        ),
        (
            {**OAUTH, "BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL": "login.example.org/token"},
            [
                "BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL: must be an http(s) URL, got "
                "'login.example.org/token'"
            ],
        ),
        (
            {**OAUTH, "BRIDGE_KAFKA_OAUTH_EXTENSIONS": "logicalCluster=lkc-1,pool"},
            [
                "BRIDGE_KAFKA_OAUTH_EXTENSIONS: expected key=value pairs separated by commas, "
                "got 'pool'"
            ],
        ),
        (
            {"BRIDGE_KAFKA_SECURITY_PROTOCOL": "SSL", "BRIDGE_KAFKA_SSL_KEYFILE": "/k.pem"},
            [
                "BRIDGE_KAFKA_SSL_KEYFILE: set without BRIDGE_KAFKA_SSL_CERTFILE (the client "
                "certificate it belongs to)"
            ],
        ),
        (
            {"BRIDGE_KAFKA_SSL_CERTFILE": "/c.pem"},
            [
                "BRIDGE_KAFKA_SSL_CERTFILE: set, but BRIDGE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT "
                "does not use TLS (use SSL or SASL_SSL)"
            ],
        ),
        (
            {"BRIDGE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
            [
                "BRIDGE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512: needs "
                "BRIDGE_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT), not PLAINTEXT"
            ],
        ),
        (
            {**OAUTH, "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SSL"},
            [
                "BRIDGE_KAFKA_SASL_MECHANISM=OAUTHBEARER: needs "
                "BRIDGE_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT), not SSL"
            ],
        ),
        (
            {"BRIDGE_KAFKA_SASL_USERNAME": "u", "BRIDGE_KAFKA_SASL_PASSWORD": "password-1"},
            [
                "BRIDGE_KAFKA_SASL_USERNAME / BRIDGE_KAFKA_SASL_PASSWORD: set, but "
                "BRIDGE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL (use SASL_SSL or "
                "SASL_PLAINTEXT)"
            ],
        ),
        (
            {"BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            [
                "BRIDGE_KAFKA_SASL_USERNAME / BRIDGE_KAFKA_SASL_PASSWORD: required with "
                "BRIDGE_KAFKA_SECURITY_PROTOCOL=SASL_SSL and BRIDGE_KAFKA_SASL_MECHANISM=PLAIN"
            ],
        ),
        (
            {
                "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "BRIDGE_KAFKA_SASL_MECHANISM": "AWS_MSK_IAM",
            },
            [
                "BRIDGE_KAFKA_SASL_MECHANISM=AWS_MSK_IAM: MSK accepts IAM only over TLS: set "
                "SASL_SSL",
                "BRIDGE_KAFKA_AWS_REGION: required with BRIDGE_KAFKA_SASL_MECHANISM=AWS_MSK_IAM",
            ],
        ),
    ],
)
def test_impossible_combinations_are_refused_one_line_each(
    environ: dict[str, str], expected: list[str]
) -> None:
    assert problems(environ) == expected


def test_possible_combinations_load() -> None:
    load(OAUTH)
    load({**OAUTH, "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    load(
        {
            "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "BRIDGE_KAFKA_SASL_MECHANISM": "AWS_MSK_IAM",
            "BRIDGE_KAFKA_AWS_REGION": "eu-west-1",
        }
    )
    load({"BRIDGE_KAFKA_SECURITY_PROTOCOL": "SSL", "BRIDGE_KAFKA_SSL_CERTFILE": "/c.pem"})


def test_new_secrets_are_secrets_and_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-a-file-1\n")
    config = load(
        {
            **OAUTH,
            "BRIDGE_KAFKA_OAUTH_CLIENT_SECRET_FILE": str(tmp_path / "secret"),
            "BRIDGE_KAFKA_SSL_CERTFILE": "/c.pem",
            "BRIDGE_KAFKA_SSL_KEY_PASSWORD": "key-password-1",
        }
    )
    assert sorted(config.secrets()) == ["from-a-file-1", "key-password-1"]
    assert "from-a-file-1" not in repr(config)
    assert "key-password-1" not in repr(config)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    ca = make_ca("test CA").write(directory, "ca")
    issue(ca, "client", server=False).write(directory, "client", password="key-password-1")
    return directory


def tls_env(certs: Path, **extra: str) -> dict[str, str]:
    return {
        "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "BRIDGE_KAFKA_SSL_CAFILE": str(certs / "ca.pem"),
        "BRIDGE_KAFKA_SSL_CERTFILE": str(certs / "client.pem"),
        "BRIDGE_KAFKA_SSL_KEYFILE": str(certs / "client.key"),
        **extra,
    }


def test_client_certificate_and_hostname_checking(certs: Path) -> None:
    kafka = load(tls_env(certs, BRIDGE_KAFKA_SSL_KEY_PASSWORD="key-password-1")).kafka
    context = common_settings(kafka)["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED
    unchecked = load(
        tls_env(
            certs,
            BRIDGE_KAFKA_SSL_KEY_PASSWORD="key-password-1",
            BRIDGE_KAFKA_SSL_CHECK_HOSTNAME="false",
        )
    ).kafka
    context = common_settings(unchecked)["ssl_context"]
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED  # the CA is still checked


@pytest.mark.parametrize("password", [None, "wrong-password-1"])
def test_an_unusable_key_is_one_line_naming_the_file(certs: Path, password: str | None) -> None:
    extra = {"BRIDGE_KAFKA_SSL_KEY_PASSWORD": password} if password else {}
    kafka = load(tls_env(certs, **extra)).kafka
    with pytest.raises(ConfigError) as caught:
        common_settings(kafka)
    [line] = caught.value.problems
    assert line.startswith("BRIDGE_KAFKA_SSL_CERTFILE / BRIDGE_KAFKA_SSL_KEYFILE: cannot load")
    assert str(certs / "client.pem") in line
    assert "wrong-password-1" not in line


def test_a_missing_ca_file_is_one_line(tmp_path: Path) -> None:
    kafka = load(
        {"BRIDGE_KAFKA_SECURITY_PROTOCOL": "SSL", "BRIDGE_KAFKA_SSL_CAFILE": str(tmp_path / "x")}
    ).kafka
    with pytest.raises(ConfigError) as caught:
        common_settings(kafka)
    assert caught.value.problems == [
        f"BRIDGE_KAFKA_SSL_CAFILE: cannot load {str(tmp_path / 'x')!r}: No such file or directory"
    ]


def test_every_client_gets_the_same_token_provider() -> None:
    kafka = load(
        {**OAUTH, "BRIDGE_KAFKA_OAUTH_EXTENSIONS": "logicalCluster=lkc-1, identityPoolId=pool-2"}
    ).kafka
    settings = [
        common_settings(kafka),
        producer_settings(kafka),
        consumer_settings(kafka, group="g"),
    ]
    providers = {id(s["sasl_oauth_token_provider"]) for s in settings}
    assert len(providers) == 1
    provider = settings[0]["sasl_oauth_token_provider"]
    assert isinstance(provider, OAuthTokenProvider)
    assert all(s["sasl_mechanism"] == "OAUTHBEARER" for s in settings)
    assert provider.extensions() == {"logicalCluster": "lkc-1", "identityPoolId": "pool-2"}
    assert "client-secret-1" not in repr(provider)


def test_msk_iam_is_oauthbearer_with_the_signer() -> None:
    kafka = load(
        {
            "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "BRIDGE_KAFKA_SASL_MECHANISM": "AWS_MSK_IAM",
            "BRIDGE_KAFKA_AWS_REGION": "eu-west-1",
        }
    ).kafka
    settings = common_settings(kafka)
    assert settings["sasl_mechanism"] == "OAUTHBEARER"
    assert isinstance(settings["sasl_oauth_token_provider"], MskIamTokenProvider)
    assert settings["sasl_oauth_token_provider"].region == "eu-west-1"
    assert "sasl_plain_username" not in settings


def kafka_client_calls() -> list[tuple[str, str]]:
    """Every construction of an aiokafka client in bridge/, with the settings it gets."""
    found = []
    for path in sorted((ROOT / "bridge").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id.startswith("AIOKafka")
            ):
                spread = [ast.unparse(k.value) for k in node.keywords if k.arg is None]
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", " ".join(spread)))
    return found


def test_every_kafka_client_gets_the_shared_settings() -> None:
    """Producer, consumers, admin and the CLI tools: TLS, SASL and tokens from one place."""
    calls = kafka_client_calls()
    assert len(calls) >= 5  # publisher, worker, ledger (2), admin, `bridge command` (2)
    shared = ("common_settings(", "producer_settings(", "consumer_settings(")
    missing = [where for where, spread in calls if not spread.startswith(shared)]
    assert missing == []
