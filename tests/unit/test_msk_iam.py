"""AWS MSK IAM tokens from AWS's signer: their shape and expiry with fixed credentials from
the environment (the first link of the standard chain); no network."""

from __future__ import annotations

import string
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from bridge import config
from bridge.errors import StartupError
from bridge.kafka import auth
from bridge.kafka.auth import MskIamTokenProvider, TokenUnavailable, decode_msk_token
from bridge.kafka.clients import common_settings

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
ALPHABET = string.ascii_letters + string.digits + "-_"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Only the environment can give credentials: no files, no instance metadata."""
    for name in (
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def test_signed_token_shape_and_expiry(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    aws_env.setenv("AWS_SESSION_TOKEN", "session-token-from-irsa")
    before = time.time()
    token, lifetime = MskIamTokenProvider("eu-west-1").sign()
    assert set(token) <= set(ALPHABET)  # base64url without padding
    url = urlparse(decode_msk_token(token))
    assert (url.scheme, url.netloc, url.path) == ("https", "kafka.eu-west-1.amazonaws.com", "/")
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["Action"] == "kafka-cluster:Connect"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    key, day, region, service, terminator = query["X-Amz-Credential"].split("/")
    assert (key, region, service, terminator) == (
        ACCESS_KEY,
        "eu-west-1",
        "kafka-cluster",
        "aws4_request",
    )
    assert day == time.strftime("%Y%m%d", time.gmtime(before)) or day == time.strftime(
        "%Y%m%d", time.gmtime()
    )
    assert query["X-Amz-Expires"] == "900"
    assert query["X-Amz-SignedHeaders"] == "host"
    assert query["X-Amz-Security-Token"] == "session-token-from-irsa"
    assert len(query["X-Amz-Signature"]) == 64
    int(query["X-Amz-Signature"], 16)
    assert query["User-Agent"].startswith("aws-msk-iam-sasl-signer-python/")
    assert SECRET_KEY not in decode_msk_token(token)
    assert 895 <= lifetime <= 900  # 15 minutes from the signing time


def test_same_credentials_same_second_same_signature(aws_env: pytest.MonkeyPatch) -> None:
    """The signature depends on the key: another secret key signs differently."""
    aws_env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    provider = MskIamTokenProvider("us-east-1")

    def signature() -> tuple[str, str]:
        query = parse_qs(urlparse(decode_msk_token(provider.sign()[0])).query)
        return query["X-Amz-Date"][0], query["X-Amz-Signature"][0]

    date, first = signature()
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY[::-1])
    other_date, other = signature()
    if date == other_date:
        assert first != other


def test_no_credentials_is_one_line(aws_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(TokenUnavailable) as caught:
        MskIamTokenProvider("eu-west-1").sign()
    assert str(caught.value).startswith("cannot sign an AWS MSK IAM token in eu-west-1:")
    assert "\n" not in str(caught.value)


async def test_token_is_cached_until_refresh(aws_env: pytest.MonkeyPatch) -> None:
    aws_env.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    now = [0.0]
    provider = MskIamTokenProvider("eu-west-1", clock=lambda: now[0])
    first = await provider.token()
    now[0] += 600  # under 80 % of 900 s
    assert await provider.token() == first
    assert provider.fetches == 1
    now[0] += 200
    await provider.token()
    assert provider.fetches == 2


MSK_SETTINGS = {
    "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "BRIDGE_KAFKA_SASL_MECHANISM": "AWS_MSK_IAM",
    "BRIDGE_KAFKA_AWS_REGION": "eu-west-1",
}


def test_a_missing_signer_is_one_line_naming_the_fix_before_any_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth, "_PROVIDERS", {})
    monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer", None)  # not importable
    kafka = config.load(MSK_SETTINGS).kafka
    with pytest.raises(StartupError) as caught:
        common_settings(kafka)  # what every client, and `bridge run` at start, builds first
    reason = caught.value.reason
    assert "\n" not in reason
    assert reason.startswith("BRIDGE_KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs AWS's signer")
    assert "--build-arg BRIDGE_EXTRAS=msk" in reason
    assert "pip install 'channel-bridge[msk]'" in reason


def test_with_the_signer_the_settings_carry_its_token_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(auth, "_PROVIDERS", {})
    settings = common_settings(config.load(MSK_SETTINGS).kafka)
    assert settings["sasl_mechanism"] == "OAUTHBEARER"
    assert isinstance(settings["sasl_oauth_token_provider"], MskIamTokenProvider)
