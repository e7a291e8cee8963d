"""Configuration: defaults, every problem at once, secrets masked, *_FILE and TOML file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.config import SECRET_MIN_LENGTH, Secret, load, unknown_settings
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
            "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "BRIDGE_KAFKA_SASL_USERNAME": "bridge",
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


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("99999", "BRIDGE_HTTP_PORT: must be in 0..65535, got '99999'"),
        ("65536", "BRIDGE_HTTP_PORT: must be in 0..65535, got '65536'"),
        ("-1", "BRIDGE_HTTP_PORT: must be in 0..65535, got '-1'"),
    ],
)
def test_http_port_out_of_range_names_the_variable(raw: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({"BRIDGE_HTTP_PORT": raw})
    assert caught.value.problems == [problem]


@pytest.mark.parametrize("port", ["0", "65535"])
def test_http_port_range_ends_are_accepted(port: str) -> None:
    assert load({"BRIDGE_HTTP_PORT": port}).http_port == int(port)


SECRET_VARIABLES = (
    "BRIDGE_BIRD_ACCESS_KEY",
    "BRIDGE_WEBHOOK_SIGNING_KEY",
    "BRIDGE_WEBHOOK_SIGNING_KEY_PREVIOUS",
    "BRIDGE_KAFKA_SASL_PASSWORD",
)


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_a_secret_too_short_to_be_real_is_refused_without_showing_it(variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load({variable: "q7x"})
    assert caught.value.problems == [
        f"{variable}: too short for a secret: at least {SECRET_MIN_LENGTH} characters"
    ]
    assert "q7x" not in str(caught.value)


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_a_short_secret_from_a_file_is_refused_too(variable: str, tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("q7x\n")
    with pytest.raises(ConfigError, match=f"^invalid configuration:\n  {variable}: too short"):
        load({f"{variable}_FILE": str(path)})


def test_a_secret_of_the_minimum_length_is_accepted() -> None:
    key = "k" * SECRET_MIN_LENGTH
    config = load({"BRIDGE_BIRD_ACCESS_KEY": key})
    assert config.bird.access_key == Secret(key)


@pytest.mark.parametrize(
    ("environ", "warnings"),
    [
        (
            {"BRIDGE_KAFKA_BOOTSTRAP_SERVER": "x:9092"},
            [
                "BRIDGE_KAFKA_BOOTSTRAP_SERVER is not a known setting; "
                "did you mean BRIDGE_KAFKA_BOOTSTRAP_SERVERS?"
            ],
        ),
        (
            {"BRIDGE_BIRD_ACCESSKEY_FILE": "/k", "BRIDGE_LOGLEVEL": "debug"},
            [
                "BRIDGE_BIRD_ACCESSKEY_FILE is not a known setting; "
                "did you mean BRIDGE_BIRD_ACCESS_KEY_FILE?",
                "BRIDGE_LOGLEVEL is not a known setting; did you mean BRIDGE_LOG_LEVEL?",
            ],
        ),
        ({"BRIDGE_ZZZ": "1"}, ["BRIDGE_ZZZ is not a known setting"]),
        (
            {
                "BRIDGE_HTTP_PORT": "1",
                "BRIDGE_WEBHOOK_SIGNING_KEY_FILE": "/k",
                "BRIDGE_KAFKA_SASL_PASSWORD_FILE": "/p",
                "BRIDGE_CONFIG_FILE": "/c.toml",
                "BRIDGE_SIMULATOR_ADMIN_TOKEN": "t",
                "PATH": "/bin",
                "KAFKA_BOOTSTRAP": "x",
            },
            [],
        ),
        (  # the standard OpenTelemetry variables are the SDK's, not warned about
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_SERVICE_NAME": "bridge-eu",
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.1",
            },
            [],
        ),
    ],
)
def test_unknown_bridge_variables_are_named_with_the_closest_known_one(
    environ: dict[str, str], warnings: list[str]
) -> None:
    assert unknown_settings(environ) == warnings


def test_every_documented_variable_is_known() -> None:
    documented = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    names = set(re.findall(r"`(BRIDGE_[A-Z_]+)`", documented))
    assert len(names) > 40
    assert unknown_settings(dict.fromkeys(names, "1")) == []


def test_periodic_reconciliation_needs_a_workspace() -> None:
    env = {"BRIDGE_BIRD_ACCESS_KEY": "access-key-1", "BRIDGE_RECONCILE_INTERVAL_S": "60"}
    with pytest.raises(ConfigError) as caught:
        load(env).require(["commands"])
    assert caught.value.problems == [
        "BRIDGE_BIRD_WORKSPACE_ID: required when BRIDGE_RECONCILE_INTERVAL_S > 0 "
        "(the workspace to reconcile)"
    ]
    load({**env, "BRIDGE_BIRD_WORKSPACE_ID": "ws-1"}).require(["commands"])
    load({**env, "BRIDGE_RECONCILE_INTERVAL_S": "0"}).require(["commands"])
    insecure = {**env, "BRIDGE_WEBHOOK_INSECURE": "true"}
    load(insecure).require(["ingest"])  # ingest does not reconcile


def test_fetch_max_wait_keeps_kafkas_default_and_the_embedded_broker_a_short_one() -> None:
    from bridge.kafka.clients import consumer_settings
    from bridge.kafka.embedded import EMBEDDED_SETTINGS
    from bridgedev.runner import dev_environment

    assert consumer_settings(load({}).kafka, group="g")["fetch_max_wait_ms"] == 500
    # The embedded broker holds a fetch for its whole wait even when records arrive.
    embedded = consumer_settings(load(EMBEDDED_SETTINGS).kafka, group=None)
    assert embedded["fetch_max_wait_ms"] <= 20
    dev = load(dev_environment(kafka_port=1, port=2, simulator_port=3))
    assert dev.kafka.fetch_max_wait_ms == embedded["fetch_max_wait_ms"]
    tuned = load({"BRIDGE_KAFKA_FETCH_MAX_WAIT_MS": "0"}).kafka
    assert consumer_settings(tuned, group="g")["fetch_max_wait_ms"] == 0


def test_fetch_max_wait_refuses_a_negative_or_huge_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"BRIDGE_KAFKA_FETCH_MAX_WAIT_MS": "-1"})
    assert caught.value.problems == [
        "BRIDGE_KAFKA_FETCH_MAX_WAIT_MS: must be in 0..60000, got '-1'"
    ]
    with pytest.raises(ConfigError) as caught:
        load({"BRIDGE_KAFKA_FETCH_MAX_WAIT_MS": "600000"})
    assert caught.value.problems == [
        "BRIDGE_KAFKA_FETCH_MAX_WAIT_MS: must be in 0..60000, got '600000'"
    ]


def test_the_producer_batches_up_to_256_kib_per_partition() -> None:
    from bridge.kafka.clients import producer_settings

    # aiokafka's 16 KiB batch, one request per broker in flight: too little per round trip.
    assert producer_settings(load({}).kafka)["max_batch_size"] == 256 * 1024
    tuned = load({"BRIDGE_KAFKA_MAX_BATCH_BYTES": "65536"}).kafka
    assert producer_settings(tuned)["max_batch_size"] == 65536
    with pytest.raises(ConfigError) as caught:
        load({"BRIDGE_KAFKA_MAX_BATCH_BYTES": "2000000"})
    assert caught.value.problems == [
        "BRIDGE_KAFKA_MAX_BATCH_BYTES: must be in 16384..1048576, got '2000000'"
    ]
