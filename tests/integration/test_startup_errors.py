"""Start-up errors as people meet them: one line on stderr, a non-zero exit, no traceback.

Real processes, real sockets: a port someone else listens on, a broker or Bird that is
not there, a setting out of range.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from bridge.kafka.embedded import free_port

pytestmark = pytest.mark.integration

BRIDGE = str(Path(sys.executable).parent / "bridge")


def run_bridge(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return subprocess.run(
        [BRIDGE, *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode != 0, result.stderr
    assert len(lines) == 1, result.stderr
    for text in ("Traceback", "Unclosed"):
        assert text not in result.stderr + result.stdout
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_http_port_out_of_range() -> None:
    result = run_bridge("run", env={"BRIDGE_HTTP_PORT": "99999", "BRIDGE_WEBHOOK_INSECURE": "1"})
    assert_one_line(result, "BRIDGE_HTTP_PORT", "0..65535")
    assert result.returncode == 2


def test_bridge_run_on_a_port_in_use(taken_port: int) -> None:
    # Found before any connection to Kafka: no broker needed to see it.
    env = {
        "BRIDGE_HTTP_HOST": "127.0.0.1",
        "BRIDGE_HTTP_PORT": str(taken_port),
        "BRIDGE_WEBHOOK_INSECURE": "true",
        "BRIDGE_BIRD_ACCESS_KEY": "dev-access-key",
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
    }
    result = run_bridge("run", env=env)
    assert_one_line(
        result, f"bridge run: cannot listen on 127.0.0.1:{taken_port}", "BRIDGE_HTTP_PORT", "in use"
    )


@pytest.mark.parametrize("option", ["--kafka-port", "--port", "--simulator-port"])
def test_bridge_dev_on_a_port_in_use(option: str, taken_port: int) -> None:
    ports = {o: str(free_port()) for o in ("--kafka-port", "--port", "--simulator-port")}
    ports[option] = str(taken_port)
    result = run_bridge("dev", *(item for pair in ports.items() for item in pair))
    assert_one_line(
        result, f"bridge dev: cannot listen on 127.0.0.1:{taken_port}", "make run", option
    )


def test_bridge_simulator_on_a_port_in_use(taken_port: int) -> None:
    result = run_bridge("simulator", "--port", str(taken_port))
    assert_one_line(result, f"bridge simulator: cannot listen on 127.0.0.1:{taken_port}")


def test_bridge_command_without_a_broker() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    result = run_bridge("command", "list", env={"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap})
    assert_one_line(result, f"cannot reach Kafka at {bootstrap}", "is `make run` running?")


def test_subscriptions_ensure_with_bird_unreachable() -> None:
    api = f"http://127.0.0.1:{free_port()}"
    env = {
        "BRIDGE_BIRD_API_URL": api,
        "BRIDGE_BIRD_ACCESS_KEY": "dev-access-key",
        "BRIDGE_BIRD_ORGANIZATION_ID": "o",
        "BRIDGE_BIRD_WORKSPACE_ID": "w",
        "BRIDGE_WEBHOOK_PUBLIC_URL": "https://bridge.example.org/webhooks/bird",
        "BRIDGE_COMMANDS_DEADLINE_S": "1",  # the retry budget of each Bird call
    }
    result = run_bridge("subscriptions", "ensure", env=env)
    assert_one_line(result, "bridge subscriptions ensure:", "cannot connect to Bird", api)


def test_unknown_variable_is_warned_about_by_name() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {"BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BRIDGE_KAFKA_BOOTSTRAP_SERVER": "x"}
    result = run_bridge("command", "list", env=env)
    assert result.returncode == 1
    warning, error = result.stderr.splitlines()
    assert warning.endswith(
        "BRIDGE_KAFKA_BOOTSTRAP_SERVER is not a known setting; "
        "did you mean BRIDGE_KAFKA_BOOTSTRAP_SERVERS?"
    )
    assert "cannot reach Kafka" in error


@pytest.mark.parametrize(
    "argv",
    [("reconcile",), ("dlq", "list"), ("dlq", "redrive"), ("dlq", "redrive", "--dry-run")],
)
def test_recovery_tools_without_a_broker(argv: tuple[str, ...]) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    env = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "BRIDGE_BIRD_ACCESS_KEY": "access-key-for-a-test",
        "BRIDGE_BIRD_WORKSPACE_ID": "ws-1",
    }
    result = run_bridge(*argv, env=env)
    assert_one_line(result, f"cannot reach Kafka at {bootstrap}", "BRIDGE_KAFKA_BOOTSTRAP_SERVERS")


def test_reconcile_without_a_workspace_names_the_variable() -> None:
    result = run_bridge("reconcile", env={"BRIDGE_BIRD_ACCESS_KEY": "access-key-for-a-test"})
    assert_one_line(result, "BRIDGE_BIRD_WORKSPACE_ID", "--workspace")


# The image built without `--build-arg BRIDGE_EXTRAS=msk`: AWS's signer cannot be imported
# (None in sys.modules is how Python marks a module as not importable).
WITHOUT_SIGNER = """
import sys
sys.modules["aws_msk_iam_sasl_signer"] = None
from bridge.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("argv", [("run", "--role", "commands"), ("command", "list")])
def test_msk_iam_without_the_signer_stops_at_start_naming_the_fix(argv: tuple[str, ...]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "AWS_"))}
    env = {
        **clean,
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "BRIDGE_KAFKA_SASL_MECHANISM": "AWS_MSK_IAM",
        "BRIDGE_KAFKA_AWS_REGION": "eu-west-1",
        "BRIDGE_BIRD_ACCESS_KEY": "access-key-for-a-test",
        "BRIDGE_HTTP_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_SIGNER, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line(
        result,
        f"bridge {argv[0]}: BRIDGE_KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs AWS's signer package "
        "(aws-msk-iam-sasl-signer-python), which is not installed",
        "--build-arg BRIDGE_EXTRAS=msk",
        "pip install 'channel-bridge[msk]'",
    )
    assert result.returncode == 1
    assert result.stdout == ""


@pytest.mark.parametrize(
    "argv",
    [
        ("dlq", "list"),
        ("dlq", "redrive", "--dry-run"),
        ("command", "list"),
        ("reconcile", "--workspace", "ws-1"),
        ("run", "--role", "commands"),
    ],
)
def test_a_client_certificate_that_does_not_load_is_one_line(
    argv: tuple[str, ...], tmp_path: Path
) -> None:
    """The TLS files are read when a Kafka client is built, after the settings were
    checked: that late refusal is one line too, in every tool that opens a client."""
    missing = tmp_path / "missing"
    env = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "BRIDGE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "BRIDGE_KAFKA_SSL_CERTFILE": str(missing / "client.pem"),
        "BRIDGE_KAFKA_SSL_KEYFILE": str(missing / "client.key"),
        "BRIDGE_BIRD_ACCESS_KEY": "access-key-for-a-test",
        "BRIDGE_BIRD_WORKSPACE_ID": "ws-1",
        "BRIDGE_HTTP_PORT": str(free_port()),
    }
    result = run_bridge(*argv, env=env)
    assert_one_line(result, "BRIDGE_KAFKA_SSL_CERTFILE", "cannot load the client certificate")
