"""Configuration: defaults, every problem at once, secrets masked, *_FILE and TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import Secret, load
from bridge.errors import ConfigError


def test_defaults_follow_the_contract() -> None:
    config = load({})
    assert config.kafka.bootstrap_servers == "localhost:9092"
    assert config.bird.api_url == "https://api.bird.com"
    assert config.topics.events == "bird.channel-events"
    assert config.topics.commands == "bird.connector-commands"
    assert config.topics.results == "bird.connector-results"
    assert config.topics.dead_letter == "bird.dead-letter"
    assert (config.http_host, config.http_port) == ("0.0.0.0", 8080)
    assert config.kafka.enable_idempotence is True
    assert config.log_format == "json"
    assert config.webhook.max_body_bytes == 1024 * 1024
    assert config.webhook.publish_timeout_s <= 10


def test_every_problem_is_reported_at_once_naming_its_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            {
                "BRIDGE_HTTP_PORT": "eighty",
                "BRIDGE_KAFKA_ENABLE_IDEMPOTENCE": "maybe",
                "BRIDGE_LOG_FORMAT": "xml",
                "BRIDGE_COMMANDS_MAX_IN_FLIGHT": "0",
            }
        )
    problems = caught.value.problems
    assert len(problems) == 4
    assert any(p.startswith("BRIDGE_HTTP_PORT: expected a whole number") for p in problems)
    assert any(
        p.startswith("BRIDGE_KAFKA_ENABLE_IDEMPOTENCE: expected true or false") for p in problems
    )
    assert any(p.startswith("BRIDGE_LOG_FORMAT: must be one of json, console") for p in problems)
    assert any(p.startswith("BRIDGE_COMMANDS_MAX_IN_FLIGHT: must be at least 1") for p in problems)


def test_role_requirements_are_reported_together() -> None:
    config = load({})
    with pytest.raises(ConfigError) as caught:
        config.require(["ingest", "commands"])
    text = str(caught.value)
    assert "BRIDGE_WEBHOOK_SIGNING_KEY" in text
    assert "BRIDGE_WEBHOOK_PUBLIC_URL" in text
    assert "BRIDGE_BIRD_ACCESS_KEY" in text


def test_insecure_flag_allows_running_without_a_signing_key() -> None:
    load({"BRIDGE_WEBHOOK_INSECURE": "true"}).require(["ingest"])


def test_secrets_are_masked_everywhere() -> None:
    config = load(
        {
            "BRIDGE_BIRD_ACCESS_KEY": "live-access-key-123",
            "BRIDGE_WEBHOOK_SIGNING_KEY": "signing-456",
            "BRIDGE_KAFKA_SASL_PASSWORD": "sasl-789",
        }
    )
    text = repr(config) + str(config)
    for secret in ("live-access-key-123", "signing-456", "sasl-789"):
        assert secret not in text
    assert config.bird.access_key == Secret("live-access-key-123")
    assert sorted(config.secrets()) == ["live-access-key-123", "sasl-789", "signing-456"]


def test_secret_from_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("from-file-key\n")
    config = load({"BRIDGE_BIRD_ACCESS_KEY_FILE": str(path)})
    assert config.bird.access_key is not None
    assert config.bird.access_key.reveal() == "from-file-key"


def test_unreadable_secret_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BRIDGE_BIRD_ACCESS_KEY: cannot read"):
        load({"BRIDGE_BIRD_ACCESS_KEY_FILE": str(tmp_path / "missing")})


def test_toml_file_sets_keys_and_the_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('BRIDGE_HTTP_PORT = 9000\nBRIDGE_LOG_FORMAT = "console"\n')
    config = load({"BRIDGE_CONFIG_FILE": str(path), "BRIDGE_HTTP_PORT": "9100"})
    assert config.http_port == 9100
    assert config.log_format == "console"


def test_toml_file_with_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text("BRIDGE_HTTP_PROT = 9000\n")
    with pytest.raises(ConfigError, match="unknown key 'BRIDGE_HTTP_PROT'"):
        load({"BRIDGE_CONFIG_FILE": str(path)})


def test_example_config_file_loads() -> None:
    example = Path(__file__).parents[2] / "config" / "bridge.example.toml"
    config = load({"BRIDGE_CONFIG_FILE": str(example)})
    assert config.kafka.bootstrap_servers


def test_http_connection_timeouts_default_to_bounded_values_and_refuse_zero() -> None:
    config = load({})
    assert (config.http_header_timeout_s, config.http_keepalive_timeout_s) == (10, 75)
    with pytest.raises(ConfigError) as caught:
        load({"BRIDGE_HTTP_HEADER_TIMEOUT_S": "0", "BRIDGE_HTTP_KEEPALIVE_TIMEOUT_S": "0"})
    assert sorted(caught.value.problems) == [
        "BRIDGE_HTTP_HEADER_TIMEOUT_S: must be at least 0.1, got '0'",
        "BRIDGE_HTTP_KEEPALIVE_TIMEOUT_S: must be at least 0.1, got '0'",
    ]
