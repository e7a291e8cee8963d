"""Token providers for SASL/OAUTHBEARER: an OIDC client-credentials grant, and AWS MSK IAM.

aiokafka asks ``token()`` each time it opens a connection. Both providers keep the token
they fetched and fetch a new one once ``REFRESH_AT`` of its lifetime has passed, so every
connection gets a token with time left, and one fetch serves every client of the process.
A token never appears in a log line, an error or a ``repr``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiokafka.abc import AbstractTokenProvider
from aiokafka.conn import AIOKafkaConnection, OAuthAuthenticator
from aiokafka.errors import KafkaError

from bridge.config import KafkaConfig, Secret
from bridge.errors import StartupError

log = structlog.get_logger("bridge.kafka")

# The image built without `--build-arg BRIDGE_EXTRAS=msk` has no signer: say so at start, in
# one line with the fix, not at each connection attempt.
SIGNER_MISSING = (
    "BRIDGE_KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs AWS's signer package "
    "(aws-msk-iam-sasl-signer-python), which is not installed: use an image built with "
    "`--build-arg BRIDGE_EXTRAS=msk`, or `pip install 'channel-bridge[msk]'`"
)

# Fetch a new token once this share of the current one's lifetime has passed.
REFRESH_AT = 0.8
# A token endpoint that says nothing about the lifetime: assume this, and ask again sooner.
DEFAULT_LIFETIME_S = 300.0
FETCH_TIMEOUT_S = 10.0


class TokenUnavailable(KafkaError):  # type: ignore[misc]
    """No token for OAUTHBEARER: the message says why in one line, without the secret."""

    retriable = True

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no OAUTHBEARER token"


@dataclass(frozen=True)
class Token:
    value: Secret
    fetched_at: float  # monotonic
    lifetime_s: float

    def fresh(self, now: float) -> bool:
        return now < self.fetched_at + self.lifetime_s * REFRESH_AT

    def valid(self, now: float) -> bool:
        return now < self.fetched_at + self.lifetime_s


class CachingTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """One token at a time, fetched by ``_fetch`` and refreshed before it expires."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def _fetch(self) -> tuple[str, float]:
        """A new token and its lifetime in seconds."""
        raise NotImplementedError

    async def token(self) -> str:
        async with self._lock:
            current = self._token
            now = self._clock()
            if current is not None and current.fresh(now):
                return current.value.reveal()
            try:
                value, lifetime_s = await self._fetch()
            except TokenUnavailable as exc:
                if current is not None and current.valid(now):
                    # Keep going on the token that still has time left; retry next call.
                    log.warning("token refresh failed, using the current token", error=str(exc))
                    return current.value.reveal()
                raise
            self.fetches += 1
            self._token = Token(Secret(value), self._clock(), lifetime_s)
            log.info("kafka token fetched", lifetime_s=round(lifetime_s, 1))
            return value

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class OAuthTokenProvider(CachingTokenProvider):
    """OAuth 2.0 client credentials (RFC 6749 4.4) at an OIDC token endpoint, with the
    client id and secret in HTTP Basic (``client_secret_basic``)."""

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: Secret,
        *,
        scope: str | None = None,
        extensions: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(clock=clock)
        self.url = url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self._extensions = dict(extensions or {})

    def extensions(self) -> dict[str, str]:
        return dict(self._extensions)

    async def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        # Not URL-encoded first, as Kafka's own client (sasl.oauthbearer.header.urlencode).
        basic = f"{self.client_id}:{self._secret.reveal()}".encode()
        headers = {"Authorization": "Basic " + base64.b64encode(basic).decode("ascii")}
        where = f"OAuth token endpoint {self.url} (BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL)"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)) as http,
                http.post(self.url, data=form, headers=headers) as response,
            ):
                body: Any = None
                if response.content_type.endswith("json"):
                    body = await response.json()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            reason = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc)
            raise TokenUnavailable(f"cannot get a token from the {where}: {reason}") from None
        if status != 200 or not isinstance(body, dict):
            # RFC 6749 5.2: `error` is a code such as invalid_client; never echo the rest.
            code = body.get("error") if isinstance(body, dict) else None
            detail = f" ({code})" if isinstance(code, str) else ""
            raise TokenUnavailable(f"the {where} refused the token request: HTTP {status}{detail}")
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise TokenUnavailable(f"the {where} answered without an access_token")
        expires_in = body.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and expires_in > 0
            else DEFAULT_LIFETIME_S
        )
        return value, lifetime


class MskIamTokenProvider(CachingTokenProvider):
    """AWS MSK IAM as OAUTHBEARER: a SigV4-presigned ``kafka-cluster:Connect`` URL made by
    AWS's signer package (extra ``msk``) from the standard credential chain (environment,
    IRSA web identity, profile, instance role)."""

    def __init__(self, region: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock=clock)
        self.region = region

    def sign(self) -> tuple[str, float]:
        """A token and its lifetime in seconds (blocking: the credential chain may do I/O)."""
        try:
            from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
        except ImportError:
            raise TokenUnavailable(SIGNER_MISSING) from None
        try:
            value, expiry_ms = MSKAuthTokenProvider.generate_auth_token(self.region)
        except Exception as exc:  # botocore: no credentials, an STS error, ...
            raise TokenUnavailable(
                f"cannot sign an AWS MSK IAM token in {self.region}: {type(exc).__name__}: {exc}"
            ) from None
        lifetime = max(1.0, int(expiry_ms) / 1000 - time.time())
        return str(value), lifetime

    async def _fetch(self) -> tuple[str, float]:
        return await asyncio.get_running_loop().run_in_executor(None, self.sign)


def require_signer() -> None:
    """``StartupError`` (one line naming the fix) unless AWS's signer can be imported."""
    try:
        import aws_msk_iam_sasl_signer  # noqa: F401
    except ImportError:  # not installed, or its boto3 / botocore missing
        raise StartupError(SIGNER_MISSING) from None


def decode_msk_token(token: str) -> str:
    """The presigned URL inside an MSK IAM token (base64url without padding)."""
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


class _RefusableOAuthAuthenticator(OAuthAuthenticator):  # type: ignore[misc]
    """aiokafka (0.14) takes any answer to the token as success. A broker refusing a token
    answers with an error challenge (RFC 7628 3.2.2) and waits for %x01; only then does it
    end the exchange with its error. Without that reply the client carries on, the broker
    drops every request, and a bad token looks like a hang. With it, aiokafka raises
    ``SaslAuthenticationFailed`` with the broker's reason."""

    _acknowledged = False

    async def step(self, payload: bytes | None) -> tuple[bytes, bool] | None:
        if self._token_sent and payload and not self._acknowledged:
            self._acknowledged = True
            return b"\x01", True
        result: tuple[bytes, bool] | None = await super().step(payload)
        return result


def _authenticator_oauth(self: AIOKafkaConnection) -> OAuthAuthenticator:
    return _RefusableOAuthAuthenticator(sasl_oauth_token_provider=self._sasl_oauth_token_provider)


AIOKafkaConnection.authenticator_oauth = _authenticator_oauth


# One provider per Kafka config: every client of the process shares its token.
_PROVIDERS: dict[KafkaConfig, CachingTokenProvider] = {}


def token_provider(kafka: KafkaConfig) -> CachingTokenProvider:
    provider = _PROVIDERS.get(kafka)
    if provider is None:
        if kafka.sasl_mechanism == "AWS_MSK_IAM":
            assert kafka.aws_region  # KafkaConfig.problems
            require_signer()
            provider = MskIamTokenProvider(kafka.aws_region)
        else:
            assert kafka.oauth_token_endpoint_url  # KafkaConfig.problems
            assert kafka.oauth_client_id
            assert kafka.oauth_client_secret is not None
            provider = OAuthTokenProvider(
                kafka.oauth_token_endpoint_url,
                kafka.oauth_client_id,
                kafka.oauth_client_secret,
                scope=kafka.oauth_scope,
                extensions=kafka.oauth_extension_pairs(),
            )
        _PROVIDERS[kafka] = provider
    return provider
