"""The OAUTHBEARER token provider against a local OIDC token endpoint: fetches once, serves
the cached token, fetches again before expiry, survives an endpoint outage while its
token lasts, and never shows a token or the client secret."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from bridge.config import Secret
from bridge.kafka.auth import REFRESH_AT, OAuthTokenProvider, TokenUnavailable
from bridge.kafka.embedded import free_port
from tests.auth_helpers import OidcProvider

pytestmark = pytest.mark.integration

SECRET = "client-secret-1"


@pytest.fixture
def oidc() -> Iterator[OidcProvider]:
    provider = OidcProvider("bridge", SECRET, lifetime_s=100)
    provider.start()
    yield provider
    provider.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider_for(url: str, clock: Clock, secret: str = SECRET) -> OAuthTokenProvider:
    return OAuthTokenProvider(
        f"{url}/token", "bridge", Secret(secret), scope="kafka openid", clock=clock
    )


async def test_fetches_once_caches_and_refreshes_before_expiry(oidc: OidcProvider) -> None:
    clock = Clock()
    provider = provider_for(oidc.url, clock)
    with structlog.testing.capture_logs() as logs:
        first = await provider.token()
        assert await provider.token() == first
        clock.now += 100 * REFRESH_AT - 1  # still fresh
        assert await provider.token() == first
        assert oidc.requests["token"] == 1
        clock.now += 2  # past 80 % of its 100 s: a new one, while the old is still valid
        second = await provider.token()
    assert second != first
    assert oidc.issued == [first, second]
    assert oidc.requests["token"] == 2
    assert oidc.scopes == ["kafka openid", "kafka openid"]
    assert [e["event"] for e in logs] == ["kafka token fetched", "kafka token fetched"]
    text = repr(logs) + repr(provider)
    for secret in (first, second, SECRET):
        assert secret not in text


async def test_an_outage_is_bridged_by_the_current_token_until_it_expires() -> None:
    clock = Clock()
    oidc = OidcProvider("bridge", SECRET, lifetime_s=100)
    oidc.start()
    provider = provider_for(oidc.url, clock)
    first = await provider.token()
    oidc.stop()
    clock.now += 90  # due for a refresh, the endpoint is gone: keep the valid token
    with structlog.testing.capture_logs() as logs:
        assert await provider.token() == first
    assert logs[0]["event"] == "token refresh failed, using the current token"
    clock.now += 11  # expired: no token to give
    with pytest.raises(TokenUnavailable, match="cannot get a token from the OAuth token"):
        await provider.token()


async def test_refusal_is_one_line_with_the_oauth_error_code(oidc: OidcProvider) -> None:
    provider = provider_for(oidc.url, Clock(), secret="wrong-secret-1")
    with pytest.raises(TokenUnavailable) as caught:
        await provider.token()
    assert str(caught.value) == (
        f"the OAuth token endpoint {oidc.url}/token (BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL) "
        "refused the token request: HTTP 401 (invalid_client)"
    )
    assert "wrong-secret-1" not in repr(caught.value)


async def test_unreachable_endpoint_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TokenUnavailable) as caught:
        await provider_for(url, Clock()).token()
    assert str(caught.value).startswith(f"cannot get a token from the OAuth token endpoint {url}")
    assert "\n" not in str(caught.value)
