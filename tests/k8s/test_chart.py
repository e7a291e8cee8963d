"""The Helm chart, rendered offline with every ci/ values set: lint, schemas, invariants."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from bridge import config as bridge_config
from tests.k8s import values_doc
from tests.k8s.crds import SCHEMAS
from tests.k8s.render import (
    CHART,
    CI_DIR,
    CI_VALUES,
    HELM_VERSION,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    HelmFailed,
    Manifest,
    Rendered,
    component_name,
    containers,
    helm,
    load_values,
    merge,
    render,
    render_ci,
    render_notes,
)

each_ci_values = pytest.mark.parametrize("values_name", CI_VALUES)

SECRET_VARIABLES = {
    "BRIDGE_BIRD_ACCESS_KEY",
    "BRIDGE_WEBHOOK_SIGNING_KEY",
    "BRIDGE_WEBHOOK_SIGNING_KEY_PREVIOUS",
    "BRIDGE_KAFKA_SASL_PASSWORD",
    "BRIDGE_KAFKA_OAUTH_CLIENT_SECRET",
    "BRIDGE_KAFKA_SSL_KEY_PASSWORD",
}
# The OpenTelemetry SDK's standard variables the chart may set (values `tracing`).
OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "PriorityClass", "IngressClass"}


def deployments(rendered: Rendered) -> Iterator[Manifest]:
    yield from rendered.of_kind("Deployment")


def role_of(deployment: Manifest) -> str:
    role: str = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
    return role


def configmap_data(rendered: Rendered) -> dict[str, str]:
    """The bridge's settings (the dashboard, when enabled, is another ConfigMap)."""
    configmap = rendered.named("ConfigMap", f"{RELEASE}-channel-bridge")
    data: dict[str, str] = configmap["data"]
    return data


def prestop_seconds(container: Manifest) -> int:
    pre_stop = container.get("lifecycle", {}).get("preStop")
    if pre_stop is None:
        return 0
    if "sleep" in pre_stop:
        seconds: int = pre_stop["sleep"]["seconds"]
        return seconds
    match = re.search(r"time\.sleep\((\d+)\)", " ".join(pre_stop["exec"]["command"]))
    assert match, pre_stop
    return int(match[1])


# --- the values sets -------------------------------------------------------------------


def test_ci_values_sets_cover_the_documented_shapes() -> None:
    expected = {
        "default-values.yaml",
        "existing-secret-values.yaml",
        "keda-hpa-values.yaml",
        "ingress-values.yaml",
        "httproute-values.yaml",
        "commands-only-values.yaml",
        "ingest-only-values.yaml",
        "sasl-values.yaml",
        "workspaces-values.yaml",
        "workspaces-inline-values.yaml",
        "oauth-values.yaml",
        "msk-iam-values.yaml",
        "mtls-values.yaml",
    }
    assert expected <= set(CI_VALUES)


# --- helm itself --------------------------------------------------------------------------


def test_helm_is_the_pinned_release_built_for_a_current_kubernetes() -> None:
    version = helm("version", "--template", "{{.Version}}").stdout
    assert version == HELM_VERSION
    # Built without the release flags, helm assumes Kubernetes 1.20 when no --kube-version is
    # given and refuses the chart (kubeVersion >=1.30).
    helm("template", "demo", CHART, "--values", CI_DIR / "default-values.yaml")


@pytest.mark.parametrize("values_name", [None, *CI_VALUES])
def test_helm_lint_strict_passes(values_name: str | None) -> None:
    """`helm lint --strict`: the chart's own defaults and every ci/ values set."""
    values = ["--values", str(CI_DIR / values_name)] if values_name else []
    result = helm("lint", "--strict", "--kube-version", f"{KUBE_VERSION}.0", CHART, *values)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@each_ci_values
def test_helm_template_renders_without_warnings(values_name: str) -> None:
    rendered = render_ci(values_name)
    assert rendered.warnings == ""
    assert rendered.docs
    for doc in rendered.docs:
        assert doc["apiVersion"]
        assert doc["metadata"]["name"]


@each_ci_values
def test_every_object_passes_strict_schema_validation(values_name: str) -> None:
    problems: list[str] = []
    for doc in render_ci(values_name).docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        crd_schema = SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        try:
            if crd_schema is not None:
                jsonschema.Draft7Validator(crd_schema).validate(doc)
            else:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            problems.append(f"{where}: {str(exc).splitlines()[0]}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no schema for {doc['apiVersion']} {doc['kind']}")
    assert problems == []


@each_ci_values
def test_every_object_is_labelled_and_namespaced(values_name: str) -> None:
    rendered = render_ci(values_name)
    values = load_values(values_name)
    monitor_namespace = values.get("metrics", {}).get("serviceMonitor", {}).get("namespace")
    for doc in rendered.docs:
        labels = doc["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert key in labels, f"{doc['kind']} lacks label {key}"
        if doc["kind"] not in CLUSTER_SCOPED:
            expected = monitor_namespace if doc["kind"] == "ServiceMonitor" else None
            assert doc["metadata"]["namespace"] == (expected or NAMESPACE)


# --- the Deployments -------------------------------------------------------------------


@each_ci_values
def test_deployments_are_hardened_probed_and_memory_limited(values_name: str) -> None:
    rendered = render_ci(values_name)
    assert list(deployments(rendered)), "no Deployment rendered"
    for deployment in deployments(rendered):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        tmp_volumes = [v for v in pod["volumes"] if v["name"] == "tmp"]
        assert len(tmp_volumes) == 1
        assert "emptyDir" in tmp_volumes[0]
        for container in containers(deployment):
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["privileged"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert security["seccompProfile"]["type"] == "RuntimeDefault"
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert container["resources"]["limits"]["memory"]
            assert container["resources"]["requests"]["memory"]
            assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
            # Liveness never depends on Kafka: /healthz; readiness does: /readyz.
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["args"] == ["run", "--role", role_of(deployment)]
            # Secrets only as files: no secret value in the environment.
            for env in container.get("env", []):
                assert "secretKeyRef" not in env.get("valueFrom", {}), env["name"]
                assert env["name"] not in SECRET_VARIABLES


@each_ci_values
def test_termination_grace_exceeds_drain_deadline_plus_prestop(values_name: str) -> None:
    rendered = render_ci(values_name)
    drain = float(configmap_data(rendered)["BRIDGE_SHUTDOWN_TIMEOUT_S"])
    for deployment in deployments(rendered):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = list(containers(deployment))
        pause = prestop_seconds(container)
        assert pod["terminationGracePeriodSeconds"] > drain + pause
        if role_of(deployment) == "ingest":
            assert pause > 0, "ingest needs a preStop pause so endpoints drop it before SIGTERM"


def test_grace_period_follows_the_shutdown_timeout() -> None:
    values = merge(load_values("default-values.yaml"), {"config": {"shutdownTimeoutSeconds": 42.5}})
    rendered = render(values)
    grace = {
        role_of(d): d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for d in deployments(rendered)
    }
    assert grace == {"ingest": 43 + 5 + 10, "commands": 43 + 0 + 10}


def test_connection_timeouts_reach_the_bridge() -> None:
    values = merge(
        load_values("default-values.yaml"),
        {"config": {"httpHeaderTimeoutSeconds": 2.5, "httpKeepaliveTimeoutSeconds": 620}},
    )
    loaded = bridge_config.load(configmap_data(render(values)))
    assert (loaded.http_header_timeout_s, loaded.http_keepalive_timeout_s) == (2.5, 620)


# config.topics.<value> -> TopicsConfig field: every topic the bridge uses.
CHART_TOPICS = {
    "events": "events",
    "commands": "commands",
    "results": "results",
    "deadLetter": "dead_letter",
    "ledger": "ledger",
    "channelState": "channel_state",
    "ledgerSnapshots": "ledger_snapshots",
}


def test_every_topic_and_the_ledger_snapshot_setting_reach_the_bridge() -> None:
    """The chart sets every topic, and its defaults are the bridge's own; each value reaches
    its setting (a large snapshot threshold too, which helm reads as a float)."""
    base = load_values("default-values.yaml")
    data = configmap_data(render(base))
    assert {name for name in bridge_config.DEFAULTS if name.startswith("BRIDGE_TOPIC_")} <= set(
        data
    )
    assert set(CHART_TOPICS.values()) == {
        field.name for field in dataclasses.fields(bridge_config.TopicsConfig)
    }
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert set(CHART_TOPICS) == set(chart_values["config"]["topics"])
    loaded, defaults = bridge_config.load(data), bridge_config.load({})
    assert loaded.topics == defaults.topics
    assert loaded.topics.ledger_snapshots == "bird.connector-ledger-snapshots"
    assert data["BRIDGE_LEDGER_SNAPSHOT_RECORDS"] == "100000"
    assert loaded.commands.ledger_snapshot_records == defaults.commands.ledger_snapshot_records

    topics = {value: f"team-a.{value}" for value in CHART_TOPICS}
    for records, expected in ((0, "0"), (2500000, "2500000")):
        override = {"topics": topics, "commands": {"ledgerSnapshotRecords": records}}
        data = configmap_data(render(merge(base, {"config": override})))
        assert data["BRIDGE_LEDGER_SNAPSHOT_RECORDS"] == expected
        loaded = bridge_config.load(data)
        assert loaded.commands.ledger_snapshot_records == records
        for value, field in CHART_TOPICS.items():
            assert getattr(loaded.topics, field) == f"team-a.{value}"


def test_prestop_exec_handler_uses_python_from_the_image() -> None:
    values = merge(load_values("default-values.yaml"), {"lifecycle": {"preStopHandler": "exec"}})
    ingest = render(values).named("Deployment", component_name("ingest"))
    (container,) = list(containers(ingest))
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "/opt/venv/bin/python"
    assert prestop_seconds(container) == 5


@each_ci_values
def test_pods_roll_on_config_and_secret_changes(values_name: str) -> None:
    for deployment in deployments(render_ci(values_name)):
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])
        assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secret"])


def test_checksums_change_with_config_and_secret() -> None:
    base = load_values("default-values.yaml")

    def checksums(values: dict[str, Any]) -> tuple[str, str]:
        ingest = render(values).named("Deployment", component_name("ingest"))
        annotations = ingest["spec"]["template"]["metadata"]["annotations"]
        return annotations["checksum/config"], annotations["checksum/secret"]

    config_sum, secret_sum = checksums(base)
    assert checksums(base) == (config_sum, secret_sum)
    changed_config = checksums(merge(base, {"config": {"logLevel": "debug"}}))
    assert changed_config[0] != config_sum
    assert changed_config[1] == secret_sum
    changed_secret = checksums(merge(base, {"secrets": {"webhookSigningKey": "rotated"}}))
    assert changed_secret == (config_sum, changed_secret[1])
    assert changed_secret[1] != secret_sum


# --- configuration and secrets ---------------------------------------------------------


@each_ci_values
def test_configmap_is_a_configuration_the_bridge_accepts(values_name: str, tmp_path: Path) -> None:
    """Feed the ConfigMap plus each role's secret files to bridge.config.load/require."""
    rendered = render_ci(values_name)
    data = configmap_data(rendered)
    assert not set(data) & SECRET_VARIABLES, "secrets must never be in the ConfigMap"
    assert all(name.startswith(("BRIDGE_", "OTEL_")) for name in data)
    assert set(OTEL_VARIABLES) >= {name for name in data if name.startswith("OTEL_")}
    chart_secret = {
        key: base64.b64decode(value).decode()
        for doc in rendered.of_kind("Secret")
        for key, value in doc.get("data", {}).items()
    }
    for deployment in deployments(rendered):
        role = role_of(deployment)
        (container,) = list(containers(deployment))
        environ = dict(data)
        for env in container.get("env", []):
            if "value" in env and env["name"].startswith("BRIDGE_"):
                environ[env["name"]] = env["value"]
            if env["name"].endswith("_FILE") and env["name"].startswith("BRIDGE_"):
                key = Path(env["value"]).name
                secret_file = tmp_path / role / key
                secret_file.parent.mkdir(exist_ok=True)
                secret_file.write_text(chart_secret.get(key, f"value-of-{key}"), encoding="utf-8")
                environ[env["name"]] = str(secret_file)
        environ.pop("BRIDGE_KAFKA_SSL_CAFILE", None)  # a mounted path, not a file here
        if "BRIDGE_WORKSPACES_FILE" in environ:  # the chart's Secret, or one outside it
            rendered_file = chart_secret.get(Path(environ["BRIDGE_WORKSPACES_FILE"]).name)
            path = sample_workspaces_file(tmp_path)
            if rendered_file is not None:
                path.write_text(rendered_file, encoding="utf-8")
            environ["BRIDGE_WORKSPACES_FILE"] = str(path)
        loaded = bridge_config.load(environ)
        loaded.require([role])  # type: ignore[list-item]
        assert loaded.http_port == container["ports"][0]["containerPort"]


@each_ci_values
def test_each_role_mounts_exactly_the_secret_keys_it_reads(values_name: str) -> None:
    rendered = render_ci(values_name)
    chart_secrets = rendered.of_kind("Secret")
    for deployment in deployments(rendered):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = list(containers(deployment))
        file_vars = {
            env["name"]: env["value"]
            for env in container.get("env", [])
            if env["name"].endswith("_FILE")
        }
        volumes = {v["name"]: v for v in pod["volumes"]}
        if not file_vars:
            assert "secrets" not in volumes
            continue
        mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
        assert mount["readOnly"] is True
        items = {item["path"] for item in volumes["secrets"]["secret"]["items"]}
        assert {
            str(Path(path).relative_to(mount["mountPath"])) for path in file_vars.values()
        } == items
        for secret in chart_secrets:
            assert volumes["secrets"]["secret"]["secretName"] == secret["metadata"]["name"]
            assert items <= set(secret["data"])


def sample_workspaces_file(folder: Path) -> Path:
    """A workspaces file as the Secret of ci/workspaces-values.yaml would hold it."""
    (folder / "customer-a.access").write_text("access-key-of-customer-a")
    path = folder / "workspaces.toml"
    path.write_text(
        '[[workspace]]\nid = "ws-a"\norganizationId = "org-a"\n'
        'accessKeyFile = "customer-a.access"\nsigningKey = "signing-key-of-ws-a"\n'
    )
    return path


def test_workspaces_come_from_their_secrets_and_replace_the_single_keys() -> None:
    rendered = render_ci("workspaces-values.yaml")
    assert rendered.of_kind("Secret") == []
    data = configmap_data(rendered)
    assert data["BRIDGE_WORKSPACES_FILE"] == "/etc/channel-bridge/workspaces/workspaces.toml"
    assert "BRIDGE_BIRD_ORGANIZATION_ID" not in data
    for deployment in deployments(rendered):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = list(containers(deployment))
        assert not [e for e in container.get("env", []) if e["name"].endswith("_FILE")]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "workspaces")
        assert (mount["mountPath"], mount["readOnly"]) == ("/etc/channel-bridge/workspaces", True)
        volume = next(v for v in pod["volumes"] if v["name"] == "workspaces")
        assert [s["secret"]["name"] for s in volume["projected"]["sources"]] == [
            "bird-workspaces",
            "bird-workspace-customer-a",
            "bird-workspace-customer-b",
        ]
        assert "checksum/workspaces" in deployment["spec"]["template"]["metadata"]["annotations"]


def test_workspaces_in_values_become_the_chart_workspaces_file(tmp_path: Path) -> None:
    rendered = render_ci("workspaces-inline-values.yaml")
    (secret,) = rendered.of_kind("Secret")
    assert secret["metadata"]["name"] == component_name("workspaces")
    path = tmp_path / "workspaces.toml"
    path.write_bytes(base64.b64decode(secret["data"]["workspaces.toml"]))
    workspaces = bridge_config.load({"BRIDGE_WORKSPACES_FILE": str(path)}).workspaces
    assert [w.organization_id for w in workspaces] == [
        "9a1f0a4e-2222-4222-8222-222222222222",
        "c3b20a4e-4444-4444-8444-444444444444",
    ]
    assert workspaces[1].signing_keys == (
        "signing-key-of-workspace-two",
        'signing-key-of-workspace-two-old "quoted"',
    )
    for deployment in deployments(rendered):
        volume = next(
            v
            for v in deployment["spec"]["template"]["spec"]["volumes"]
            if v["name"] == "workspaces"
        )
        assert volume["projected"]["sources"] == [{"secret": {"name": secret["metadata"]["name"]}}]


def test_existing_secret_suppresses_the_chart_secret() -> None:
    rendered = render_ci("existing-secret-values.yaml")
    assert rendered.of_kind("Secret") == []
    ingest = rendered.named("Deployment", component_name("ingest"))
    volume = next(
        v for v in ingest["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets"
    )
    assert volume["secret"]["secretName"] == "channel-bridge-credentials"
    assert {item["key"] for item in volume["secret"]["items"]} == {
        "signing_key",
        "signing_key_previous",
    }
    assert len(render_ci("default-values.yaml").of_kind("Secret")) == 1


def test_ingest_needs_no_secret_when_insecure_and_plaintext() -> None:
    values = merge(
        load_values("ingest-only-values.yaml"),
        {"config": {"webhook": {"insecure": True, "ensureSubscriptions": False}}, "secrets": {}},
    )
    values["secrets"] = {}
    rendered = render(values)
    assert rendered.of_kind("Secret") == []
    ingest = rendered.named("Deployment", component_name("ingest"))
    assert "env" not in ingest["spec"]["template"]["spec"]["containers"][0]
    notes = render_notes(values)
    assert "WARNING: config.webhook.insecure=true: webhook signatures are NOT verified" in notes
    assert "insecure=true" not in render_notes(load_values("ingest-only-values.yaml"))


# --- scaling ---------------------------------------------------------------------------


@each_ci_values
def test_hpa_and_scaledobject_never_target_the_same_deployment(values_name: str) -> None:
    rendered = render_ci(values_name)
    names = {d["metadata"]["name"] for d in deployments(rendered)}
    targets = [doc["spec"]["scaleTargetRef"] for doc in rendered.of_kind("HorizontalPodAutoscaler")]
    targets += [doc["spec"]["scaleTargetRef"] for doc in rendered.of_kind("ScaledObject")]
    target_names = [t["name"] for t in targets]
    assert len(target_names) == len(set(target_names)), target_names
    assert set(target_names) <= names
    assert all(t["kind"] == "Deployment" for t in targets)
    for deployment in deployments(rendered):
        autoscaled = deployment["metadata"]["name"] in target_names
        assert ("replicas" in deployment["spec"]) != autoscaled


@each_ci_values
def test_commands_scaling_is_capped_at_the_partition_count(values_name: str) -> None:
    rendered = render_ci(values_name)
    partitions = int(configmap_data(rendered)["BRIDGE_KAFKA_TOPIC_PARTITIONS"])
    commands = component_name("commands")
    for hpa in rendered.of_kind("HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == commands:
            assert hpa["spec"]["maxReplicas"] <= partitions
    for scaled in rendered.of_kind("ScaledObject"):
        assert scaled["spec"]["maxReplicaCount"] <= partitions
        (trigger,) = scaled["spec"]["triggers"]
        metadata = trigger["metadata"]
        assert metadata["topic"] == configmap_data(rendered)["BRIDGE_TOPIC_COMMANDS"]
        assert metadata["consumerGroup"] == configmap_data(rendered)["BRIDGE_KAFKA_CONSUMER_GROUP"]
        assert metadata["allowIdleConsumers"] == "false"


def test_keda_defaults_to_the_partition_count() -> None:
    rendered = render_ci("keda-hpa-values.yaml")
    scaled = rendered.named("ScaledObject", component_name("commands"))
    assert scaled["spec"]["maxReplicaCount"] == 12
    assert rendered.named("HorizontalPodAutoscaler", component_name("ingest"))


def test_keda_authenticates_like_the_bridge_with_sasl() -> None:
    rendered = render_ci("sasl-values.yaml")
    scaled = rendered.named("ScaledObject", component_name("commands"))
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["metadata"]["tls"] == "enable"
    auth = rendered.named("TriggerAuthentication", trigger["authenticationRef"]["name"])
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    (secret,) = rendered.of_kind("Secret")
    assert refs["password"]["name"] == secret["metadata"]["name"]
    assert refs["password"]["key"] in secret["data"]
    assert refs["ca"] == {"parameter": "ca", "name": "kafka-ca", "key": "ca.crt"}
    (username,) = auth["spec"]["configMapTargetRef"]
    assert configmap_data(rendered)[username["key"]] == "channel-bridge"


def keda_auth(rendered: Rendered) -> tuple[Manifest, Manifest]:
    scaled = rendered.named("ScaledObject", component_name("commands"))
    (trigger,) = scaled["spec"]["triggers"]
    auth = rendered.named("TriggerAuthentication", trigger["authenticationRef"]["name"])
    return trigger, auth


def test_keda_authenticates_like_the_bridge_with_oauthbearer() -> None:
    rendered = render_ci("oauth-values.yaml")
    data = configmap_data(rendered)
    trigger, auth = keda_auth(rendered)
    assert trigger["metadata"]["sasl"] == "oauthbearer"
    assert trigger["metadata"]["tls"] == "enable"
    from_config = {ref["parameter"]: data[ref["key"]] for ref in auth["spec"]["configMapTargetRef"]}
    assert from_config == {
        "username": "channel-bridge",
        "scopes": "api://kafka/.default",
        "oauthExtensions": "logicalCluster=lkc-00000,identityPoolId=pool-00000",
    }
    (endpoint,) = auth["spec"]["env"]
    assert endpoint == {
        "parameter": "oauthTokenEndpointUri",
        "name": "BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL",
        "containerName": "bridge",
    }
    commands = rendered.named("Deployment", component_name("commands"))
    (container,) = list(containers(commands))
    assert container["name"] == "bridge"
    assert {"name": endpoint["name"], "value": "https://login.example.com/oauth2/v2.0/token"} in (
        container["env"]
    )
    (password,) = auth["spec"]["secretTargetRef"]
    (secret,) = rendered.of_kind("Secret")
    assert password["parameter"] == "password"
    assert base64.b64decode(secret["data"][password["key"]]) == b"ci-oauth-client-secret"
    assert "kafka-sasl-password" not in secret["data"]  # no SASL password with OAUTHBEARER
    for deployment in deployments(rendered):
        (container,) = list(containers(deployment))
        names = {env["name"] for env in container.get("env", [])}
        assert "BRIDGE_KAFKA_OAUTH_CLIENT_SECRET_FILE" in names
        assert "BRIDGE_KAFKA_SASL_PASSWORD_FILE" not in names


def test_keda_and_the_pods_use_the_irsa_role_with_msk_iam() -> None:
    rendered = render_ci("msk-iam-values.yaml")
    data = configmap_data(rendered)
    assert data["BRIDGE_KAFKA_SASL_MECHANISM"] == "AWS_MSK_IAM"
    assert data["BRIDGE_KAFKA_AWS_REGION"] == "eu-west-1"
    trigger, auth = keda_auth(rendered)
    assert trigger["metadata"]["sasl"] == "oauthbearer"
    assert trigger["metadata"]["saslTokenProvider"] == "aws_msk_iam"
    assert trigger["metadata"]["awsRegion"] == "eu-west-1"
    assert auth["spec"] == {"podIdentity": {"provider": "aws", "identityOwner": "workload"}}
    (account,) = rendered.of_kind("ServiceAccount")
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role == "arn:aws:iam::123456789012:role/channel-bridge"
    for deployment in deployments(rendered):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_notes_warn_when_msk_iam_runs_on_the_default_image() -> None:
    warning = "WARNING: config.kafka.saslMechanism=AWS_MSK_IAM needs AWS's signer in the image"
    values = load_values("msk-iam-values.yaml")
    notes = render_notes(values)
    assert warning in notes
    assert "channel-bridge:0.1.0 is not tagged as an image built with it" in notes
    assert "--build-arg BRIDGE_EXTRAS=msk" in notes
    assert warning in render_notes(merge(values, {"image": {"registry": "r.io", "tag": "0.2.0"}}))
    # An image tagged as built with the signer, or pinned by digest (the chart cannot tell).
    for image in ({"tag": "0.1.0-msk"}, {"digest": "sha256:" + "a" * 64}):
        assert warning not in render_notes(merge(values, {"image": image}))
    assert warning not in render_notes(load_values("oauth-values.yaml"))


def test_notes_warn_that_keda_checks_host_names_anyway() -> None:
    warning = "WARNING: config.kafka.sslCheckHostname=false is for the pods only"
    values = load_values("mtls-values.yaml")
    assert warning not in render_notes(values)
    unchecked = merge(values, {"config": {"kafka": {"sslCheckHostname": False}}})
    assert warning in render_notes(unchecked)
    # KEDA gets no parameter for it: unsafeSsl would drop the CA check as well.
    metadata, _, _ = keda_parameters(render(unchecked))
    assert "unsafeSsl" not in metadata
    no_keda = merge(unchecked, {"commands": {"autoscaling": {"keda": {"enabled": False}}}})
    assert warning not in render_notes(no_keda)


def test_keda_presents_the_pods_client_certificate_with_mtls() -> None:
    rendered = render_ci("mtls-values.yaml")
    data = configmap_data(rendered)
    trigger, auth = keda_auth(rendered)
    assert "sasl" not in trigger["metadata"]
    assert trigger["metadata"]["tls"] == "enable"
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert refs["cert"] == {
        "parameter": "cert",
        "name": "channel-bridge-kafka-client",
        "key": "tls.crt",
    }
    assert refs["key"] == {
        "parameter": "key",
        "name": "channel-bridge-kafka-client",
        "key": "tls.key",
    }
    assert refs["ca"] == {"parameter": "ca", "name": "kafka-ca", "key": "ca.crt"}
    (secret,) = rendered.of_kind("Secret")
    assert refs["keyPassword"] == {
        "parameter": "keyPassword",
        "name": secret["metadata"]["name"],
        "key": "kafka-ssl-key-password",
    }
    assert base64.b64decode(secret["data"]["kafka-ssl-key-password"]) == b"ci-client-key-password"
    for deployment in deployments(rendered):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = list(containers(deployment))
        env = {e["name"]: e["value"] for e in container["env"]}
        secrets_mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
        assert env["BRIDGE_KAFKA_SSL_KEY_PASSWORD_FILE"] == (
            f"{secrets_mount['mountPath']}/kafka-ssl-key-password"
        )
        mount = next(m for m in container["volumeMounts"] if m["name"] == "kafka-client-cert")
        volume = next(v for v in pod["volumes"] if v["name"] == "kafka-client-cert")
        assert volume["secret"]["secretName"] == "channel-bridge-kafka-client"
        paths = {f"{mount['mountPath']}/{item['path']}" for item in volume["secret"]["items"]}
        assert {data["BRIDGE_KAFKA_SSL_CERTFILE"], data["BRIDGE_KAFKA_SSL_KEYFILE"]} == paths
    assert data["BRIDGE_KAFKA_SSL_CHECK_HOSTNAME"] == "true"


def test_an_existing_secret_holds_the_client_key_password() -> None:
    values = merge(
        load_values("mtls-values.yaml"),
        {
            "secrets": {
                "existingSecret": "bridge-credentials",
                "existingSecretKeys": {"kafkaSslKeyPassword": "client-key-password"},
            }
        },
    )
    rendered = render(values)
    assert rendered.of_kind("Secret") == []
    _, auth = keda_auth(rendered)
    refs = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert refs["keyPassword"] == {
        "parameter": "keyPassword",
        "name": "bridge-credentials",
        "key": "client-key-password",
    }
    for deployment in deployments(rendered):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = list(containers(deployment))
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["BRIDGE_KAFKA_SSL_KEY_PASSWORD_FILE"].endswith("/client-key-password")
        volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
        assert {"key": "client-key-password", "path": "client-key-password"} in (
            volume["secret"]["items"]
        )
    # Without a password the key is read as unencrypted: no variable, no KEDA parameter.
    plain = render(merge(values, {"secrets": {"existingSecretKeys": {"kafkaSslKeyPassword": ""}}}))
    _, auth = keda_auth(plain)
    assert "keyPassword" not in {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    for deployment in deployments(plain):
        (container,) = list(containers(deployment))
        assert "BRIDGE_KAFKA_SSL_KEY_PASSWORD_FILE" not in {
            e["name"] for e in container.get("env", [])
        }


# KEDA's `kafka` scaler, as read in kedacore/keda pkg/scalers/kafka_scaler.go
# (parseKafkaAuthParams, parseSaslOAuthParams, parseTLS, parseKafkaMetadata) and in
# keda-docs content/docs/2.18/scalers/apache-kafka.md (KEDA 2.18; the same names since 2.15,
# which added `saslTokenProvider`). KEDA ignores any other name without a word, so a
# misspelt parameter shows only as a scaler that cannot log in.
KEDA_KAFKA_METADATA = {
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "scaleToZeroOnInvalidOffset",
    "excludePersistentLag",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "version",
    "partitionLimitation",
    "sasl",
    "saslTokenProvider",
    "tls",
    "unsafeSsl",
    "awsRegion",
}
KEDA_KAFKA_AUTH = {
    "sasl",
    "saslTokenProvider",
    "tls",
    "username",
    "password",
    "oauthTokenEndpointUri",
    "scopes",
    "oauthExtensions",
    "ca",
    "cert",
    "key",
    "keyPassword",
    "awsRoleArn",
    "awsAccessKeyID",
    "awsSecretAccessKey",
}
# `sasl` of the `kafka` scaler; `aws_msk_iam` is a `saslTokenProvider` here (a `sasl` value
# only in the experimental `apache-kafka` scaler, which the chart does not use).
KEDA_SASL_MODES = {"plaintext", "scram_sha256", "scram_sha512", "oauthbearer", "gssapi", "none"}
KEDA_TRIGGER_BASE = {
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
}


def keda_parameters(rendered: Rendered) -> tuple[dict[str, str], set[str], dict[str, str] | None]:
    """The kafka trigger's metadata, the names its TriggerAuthentication sets, its podIdentity."""
    scaled = rendered.named("ScaledObject", component_name("commands"))
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    metadata: dict[str, str] = trigger["metadata"]
    if "authenticationRef" not in trigger:
        return metadata, set(), None
    spec = rendered.named("TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    names = [
        ref["parameter"]
        for source in ("secretTargetRef", "configMapTargetRef", "env")
        for ref in spec.get(source, [])
    ]
    assert len(names) == len(set(names)), f"a parameter given twice: {names}"
    return metadata, set(names), spec.get("podIdentity")


MSK_METADATA = {
    "sasl": "oauthbearer",
    "saslTokenProvider": "aws_msk_iam",
    "awsRegion": "eu-west-1",
    "tls": "enable",
}


@pytest.mark.parametrize(
    ("values_name", "override", "metadata", "auth", "pod_identity"),
    [
        ("keda-hpa-values.yaml", {}, {}, set(), None),
        (
            "sasl-values.yaml",
            {},
            {"sasl": "scram_sha512", "tls": "enable"},
            {"username", "password", "ca"},
            None,
        ),
        (
            "sasl-values.yaml",
            {"config": {"kafka": {"saslMechanism": "SCRAM-SHA-256"}}},
            {"sasl": "scram_sha256", "tls": "enable"},
            {"username", "password", "ca"},
            None,
        ),
        (
            "sasl-values.yaml",
            {"config": {"kafka": {"saslMechanism": "PLAIN", "securityProtocol": "SASL_PLAINTEXT"}}},
            {"sasl": "plaintext"},
            {"username", "password"},
            None,
        ),
        (
            "oauth-values.yaml",
            {},
            {"sasl": "oauthbearer", "tls": "enable"},
            {"username", "password", "oauthTokenEndpointUri", "scopes", "oauthExtensions"},
            None,
        ),
        (
            "oauth-values.yaml",
            {"config": {"kafka": {"oauth": {"scope": "", "extensions": ""}}}},
            {"sasl": "oauthbearer", "tls": "enable"},
            {"username", "password", "oauthTokenEndpointUri"},
            None,
        ),
        (
            "msk-iam-values.yaml",
            {},
            MSK_METADATA,
            set(),
            {"provider": "aws", "identityOwner": "workload"},
        ),
        (
            "msk-iam-values.yaml",
            {
                "serviceAccount": {"annotations": {}},
                "commands": {
                    "autoscaling": {
                        "keda": {"awsRoleArn": "arn:aws:iam::123456789012:role/keda-bridge"}
                    }
                },
            },
            MSK_METADATA,
            set(),
            {"provider": "aws", "roleArn": "arn:aws:iam::123456789012:role/keda-bridge"},
        ),
        (
            "mtls-values.yaml",
            {},
            {"tls": "enable"},
            {"ca", "cert", "key", "keyPassword"},
            None,
        ),
        (
            "mtls-values.yaml",
            {"secrets": {"kafkaSslKeyPassword": ""}},
            {"tls": "enable"},
            {"ca", "cert", "key"},
            None,
        ),
        (
            "mtls-values.yaml",
            {
                "config": {"kafka": {"caSecret": {"name": ""}}},
                "secrets": {"kafkaSslKeyPassword": ""},
            },
            {"tls": "enable"},
            {"cert", "key"},
            None,
        ),
    ],
)
def test_keda_gets_exactly_the_kafka_scaler_parameters_of_each_mode(
    values_name: str,
    override: dict[str, Any],
    metadata: dict[str, str],
    auth: set[str],
    pod_identity: dict[str, str] | None,
) -> None:
    rendered = render(merge(load_values(values_name), override))
    rendered_metadata, names, identity = keda_parameters(rendered)
    assert set(rendered_metadata) == KEDA_TRIGGER_BASE | set(metadata)
    assert {key: rendered_metadata[key] for key in metadata} == metadata
    assert names == auth
    assert identity == pod_identity


@each_ci_values
def test_every_keda_parameter_is_one_the_kafka_scaler_reads(values_name: str) -> None:
    rendered = render_ci(values_name)
    if not rendered.of_kind("ScaledObject"):
        return
    metadata, names, identity = keda_parameters(rendered)
    assert set(metadata) <= KEDA_KAFKA_METADATA
    assert names <= KEDA_KAFKA_AUTH
    assert metadata.get("sasl", "none") in KEDA_SASL_MODES
    # KEDA refuses `tls` / `sasl` given in both places, and a cert without its key.
    assert not {"tls", "sasl", "saslTokenProvider"} & names
    assert ("cert" in names) == ("key" in names)
    assert "keyPassword" not in names or "key" in names
    if metadata.get("sasl") in ("plaintext", "scram_sha256", "scram_sha512"):
        assert {"username", "password"} <= names
    if metadata.get("sasl") == "oauthbearer" and "saslTokenProvider" not in metadata:
        assert {"username", "password", "oauthTokenEndpointUri"} <= names
    if metadata.get("saslTokenProvider") == "aws_msk_iam":
        assert metadata["tls"] == "enable"
        assert metadata["awsRegion"]
        assert identity is not None or {"awsAccessKeyID", "awsRoleArn"} & names


@each_ci_values
def test_every_deployment_has_a_disruption_budget(values_name: str) -> None:
    rendered = render_ci(values_name)
    budgets = {
        json.dumps(pdb["spec"]["selector"]["matchLabels"], sort_keys=True)
        for pdb in rendered.of_kind("PodDisruptionBudget")
    }
    for deployment in deployments(rendered):
        selector = json.dumps(deployment["spec"]["selector"]["matchLabels"], sort_keys=True)
        assert selector in budgets
        assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]


# --- exposure and network ---------------------------------------------------------------


@each_ci_values
def test_only_the_webhook_path_is_exposed(values_name: str) -> None:
    rendered = render_ci(values_name)
    for ingress in rendered.of_kind("Ingress"):
        paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
        # Several workspaces: /webhooks/bird/<workspaceId> too (Prefix matches whole segments).
        several = "workspaces" in values_name
        kind = "Prefix" if several else "Exact"
        assert [(p["path"], p["pathType"]) for p in paths] == [("/webhooks/bird", kind)] * len(
            ingress["spec"]["rules"]
        )
        assert paths[0]["backend"]["service"]["name"] == component_name("ingest")
    for route in rendered.of_kind("HTTPRoute"):
        matches = [m for rule in route["spec"]["rules"] for m in rule["matches"]]
        kind = "PathPrefix" if "workspaces" in values_name else "Exact"
        assert matches == [{"path": {"type": kind, "value": "/webhooks/bird"}, "method": "POST"}]


@each_ci_values
def test_network_policy_isolates_every_deployment(values_name: str) -> None:
    rendered = render_ci(values_name)
    policies = {
        json.dumps(p["spec"]["podSelector"]["matchLabels"], sort_keys=True): p
        for p in rendered.of_kind("NetworkPolicy")
    }
    for deployment in deployments(rendered):
        policy = policies[json.dumps(deployment["spec"]["selector"]["matchLabels"], sort_keys=True)]
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        ingress_ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
        assert ingress_ports == ["http"]
        egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert 53 in egress_ports
        assert egress_ports - {53}, "no Kafka egress"
        if role_of(deployment) == "commands":
            assert 443 in egress_ports, "the commands role calls Bird's API"


def test_network_policy_follows_the_bootstrap_ports() -> None:
    rendered = render_ci("sasl-values.yaml")
    policy = rendered.named("NetworkPolicy", component_name("ingest"))
    kafka_rule = policy["spec"]["egress"][1]
    assert kafka_rule["ports"] == [{"port": 9096, "protocol": "TCP"}]
    assert kafka_rule["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    # Ingest does not call Bird unless it manages the subscriptions.
    assert all(p["port"] != 443 for rule in policy["spec"]["egress"] for p in rule["ports"])


def test_helm_test_pod_gets_healthz_through_the_ingest_service() -> None:
    rendered = render_ci("default-values.yaml")
    (pod,) = rendered.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    service = rendered.named("Service", component_name("ingest"))
    port = service["spec"]["ports"][0]["port"]
    assert f"http://{component_name('ingest')}:{port}/healthz" in container["args"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    notes = render_notes(load_values("default-values.yaml"))
    assert f"helm test demo -n {NAMESPACE}" in notes


# --- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"secrets": {"webhookSigningKey": ""}}, "secrets.webhookSigningKey is required"),
        ({"secrets": {"birdAccessKey": ""}}, "secrets.birdAccessKey is required"),
        ({"config": {"kafka": {"bootstrapServers": ""}}}, "config.kafka.bootstrapServers"),
        ({"config": {"webhook": {"publicUrl": ""}}}, "config.webhook.publicUrl is required"),
        (
            {"config": {"kafka": {"securityProtocol": "SASL_SSL", "saslUsername": "u"}}},
            "secrets.kafkaSaslPassword is required",
        ),
        (
            {
                "config": {"kafka": {"securityProtocol": "SASL_SSL"}},
                "secrets": {"kafkaSaslPassword": "p"},
            },
            "config.kafka.saslUsername is required",
        ),
        (
            {
                "config": {
                    "kafka": {"securityProtocol": "SASL_SSL", "saslMechanism": "OAUTHBEARER"}
                },
                "secrets": {"kafkaOauthClientSecret": "s"},
            },
            "config.kafka.oauth.tokenEndpointUrl is required with saslMechanism OAUTHBEARER",
        ),
        (
            {
                "config": {
                    "kafka": {
                        "securityProtocol": "SASL_SSL",
                        "saslMechanism": "OAUTHBEARER",
                        "oauth": {"tokenEndpointUrl": "https://idp/token", "clientId": "c"},
                    }
                }
            },
            "secrets.kafkaOauthClientSecret is required",
        ),
        (
            {"config": {"kafka": {"securityProtocol": "SASL_SSL", "saslMechanism": "AWS_MSK_IAM"}}},
            "config.kafka.awsRegion is required with saslMechanism AWS_MSK_IAM",
        ),
        (
            {
                "config": {
                    "kafka": {
                        "securityProtocol": "SASL_PLAINTEXT",
                        "saslMechanism": "AWS_MSK_IAM",
                        "awsRegion": "eu-west-1",
                    }
                }
            },
            "AWS_MSK_IAM needs securityProtocol SASL_SSL",
        ),
        (
            {"config": {"kafka": {"clientCertSecret": {"name": "client"}}}},
            "config.kafka.clientCertSecret needs securityProtocol SSL or SASL_SSL",
        ),
        (
            {
                "config": {"kafka": {"securityProtocol": "SSL"}},
                "secrets": {"kafkaSslKeyPassword": "p"},
            },
            "the Kafka client key password (secrets.kafkaSslKeyPassword / "
            "secrets.existingSecretKeys.kafkaSslKeyPassword) needs "
            "config.kafka.clientCertSecret.name",
        ),
        (
            {
                "config": {
                    "kafka": {
                        "securityProtocol": "SASL_SSL",
                        "saslMechanism": "AWS_MSK_IAM",
                        "awsRegion": "eu-west-1",
                    }
                },
                "commands": {"autoscaling": {"keda": {"enabled": True}}},
            },
            "KEDA takes the pods' role from the ServiceAccount annotation "
            "eks.amazonaws.com/role-arn (IRSA), which serviceAccount.annotations lacks",
        ),
        (
            {"commands": {"autoscaling": {"keda": {"enabled": True, "maxReplicaCount": 7}}}},
            "exceeds config.kafka.topicPartitions",
        ),
        ({"ingest": {"terminationGracePeriodSeconds": 25}}, "must exceed"),
        ({"ingest": {"enabled": False}, "commands": {"enabled": False}}, "nothing to deploy"),
        ({"ingress": {"enabled": True}}, "ingress.hosts"),
        ({"httpRoute": {"enabled": True}}, "httpRoute.parentRefs"),
        (
            {"workspaces": {"existingSecret": "w"}, "config": {"bird": {"organizationId": "o"}}},
            "config.bird.organizationId: leave it empty with workspaces",
        ),
        (
            {
                "workspaces": {
                    "existingSecret": "w",
                    "items": [
                        {
                            "id": "a",
                            "organizationId": "o",
                            "accessKey": "access-key",
                            "signingKey": "signing-key",
                        }
                    ],
                }
            },
            "give the workspaces one way, not both",
        ),
        ({"workspaces": {"keySecrets": ["k"]}}, "workspaces.keySecrets needs"),
    ],
)
def test_render_refuses_incomplete_or_contradictory_values(
    override: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmFailed, match=re.escape(message)) as refused:
        render(merge(load_values("default-values.yaml"), override))
    assert "Error: execution error at (channel-bridge/templates/" in refused.value.stderr


@pytest.mark.parametrize(
    ("override", "pointer"),
    [
        ({"config": {"logLevel": "verbose"}}, "/config/logLevel"),
        ({"config": {"kafka": {"securityProtocol": "SASL"}}}, "/config/kafka/securityProtocol"),
        ({"config": {"kafka": {"saslMechanism": "GSSAPI"}}}, "/config/kafka/saslMechanism"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"ingest": {"service": {"type": "ExternalName"}}}, "/ingest/service/type"),
        ({"lifecycle": {"preStopHandler": "shell"}}, "/lifecycle/preStopHandler"),
        ({"ingest": {"replicas": 3}}, "/ingest"),
        ({"config": {"kafka": {"topicPartition": 3}}}, "/config/kafka"),
        (
            {"config": {"topics": {"ledgerSnapshots": "ledger snapshots"}}},
            "/config/topics/ledgerSnapshots",
        ),
        (
            {"config": {"commands": {"ledgerSnapshotRecords": -1}}},
            "/config/commands/ledgerSnapshotRecords",
        ),
        (
            {"config": {"commands": {"ledgerSnapshotRecords": 0.5}}},
            "/config/commands/ledgerSnapshotRecords",
        ),
        (
            {
                "metrics": {
                    "prometheusRule": {"alerts": {"ledgerSnapshotsBehind": {"recordsAbove": 0}}}
                }
            },
            "/metrics/prometheusRule/alerts/ledgerSnapshotsBehind/recordsAbove",
        ),
        (
            {
                "metrics": {
                    "prometheusRule": {"alerts": {"ledgerSnapshotsBehind": {"recordsAbove": 1.5}}}
                }
            },
            "/metrics/prometheusRule/alerts/ledgerSnapshotsBehind/recordsAbove",
        ),
        ({"config": {"extraSettings": {"LOG_LEVEL": "debug"}}}, "/config/extraSettings"),
        ({"image": {"digest": "sha256:nothex"}}, "/image/digest"),
        (
            {"config": {"kafka": {"oauth": {"extensions": "logicalCluster=lkc-1, pool=p"}}}},
            "/config/kafka/oauth/extensions",
        ),
        (
            {"config": {"kafka": {"oauth": {"extensions": "token=a=b"}}}},
            "/config/kafka/oauth/extensions",
        ),
        (
            {"commands": {"autoscaling": {"keda": {"awsRoleArn": "keda-role"}}}},
            "/commands/autoscaling/keda/awsRoleArn",
        ),
        ({"secrets": {"kafkaSslKeyPassword": 1234}}, "/secrets/kafkaSslKeyPassword"),
        ({"ingest": {"resources": {"limits": {"memory": None}}}}, "/ingest/resources/limits"),
        (
            {"commands": {"autoscaling": {"hpa": {"enabled": True}, "keda": {"enabled": True}}}},
            "/commands/autoscaling/keda/enabled",
        ),
    ],
)
def test_schema_refuses_bad_enums_types_and_unknown_keys(
    override: dict[str, Any], pointer: str
) -> None:
    with pytest.raises(HelmFailed, match=re.escape(f"at '{pointer}")) as refused:
        render(merge(load_values("default-values.yaml"), override))
    assert "values don't meet the specifications of the schema" in refused.value.stderr


def test_templates_refuse_hpa_with_keda_even_without_the_schema() -> None:
    """`helm install --skip-schema-validation` must not let both autoscalers through."""
    values = merge(
        load_values("default-values.yaml"),
        {"commands": {"autoscaling": {"hpa": {"enabled": True}, "keda": {"enabled": True}}}},
    )
    with pytest.raises(HelmFailed, match="hpa and keda are both enabled") as refused:
        render(values, "--skip-schema-validation")
    assert "Error: execution error at (channel-bridge/templates/" in refused.value.stderr


def test_schema_closes_every_object() -> None:
    """additionalProperties: false wherever the schema declares properties."""
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    open_objects: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(where or "/")
            for key, child in node.items():
                # Conditional sub-schemas constrain declared keys, they declare none.
                if key not in ("if", "then"):
                    walk(child, f"{where}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{where}/{index}")

    walk(schema, "")
    assert open_objects == []


def test_chart_packages_with_schema_and_readme_but_no_ci_values(tmp_path: Path) -> None:
    helm("package", CHART, "--destination", tmp_path)
    (archive,) = tmp_path.glob("*.tgz")
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert archive.name == f"{chart['name']}-{chart['version']}.tgz"
    with tarfile.open(archive) as packaged:
        names = set(packaged.getnames())
    for required in ("Chart.yaml", "values.yaml", "values.schema.json", "README.md"):
        assert f"channel-bridge/{required}" in names
    assert "channel-bridge/templates/tests/test-healthz.yaml" in names
    assert not [name for name in names if name.startswith("channel-bridge/ci/")]


# --- documentation ---------------------------------------------------------------------


def test_every_value_is_documented_and_the_readme_is_fresh() -> None:
    text = values_doc.VALUES.read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    params = values_doc.read_params(text)
    assert values_doc.undocumented(values, params) == []
    assert values_doc.unknown(values, params) == []
    readme = values_doc.README.read_text(encoding="utf-8")
    for key in values_doc.leaf_keys(values):
        parts = key.split(".")
        ancestors = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
        assert any(f"| `{name}` |" in readme for name in ancestors), key
    assert values_doc.main([]) == 0, "README stale: python -m tests.k8s.values_doc --write"


def test_tracing_values_become_the_sdk_variables_and_an_egress_rule() -> None:
    values = merge(
        load_values("default-values.yaml"),
        {
            "tracing": {
                "otlpEndpoint": "http://otel-collector.observability:4318",
                "sampler": "parentbased_traceidratio",
                "samplerArg": "0.1",
                "resourceAttributes": {"deployment.environment": "prod", "team": "messaging"},
            }
        },
    )
    rendered = render(values)
    data = configmap_data(rendered)
    assert {k: v for k, v in data.items() if k.startswith("OTEL_")} == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "OTEL_SERVICE_NAME": "channel-bridge",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=messaging",
    }
    for role in ("ingest", "commands"):
        policy = rendered.named("NetworkPolicy", component_name(role))
        ports = [[p["port"] for p in rule.get("ports", [])] for rule in policy["spec"]["egress"]]
        assert [4318] in ports, (role, ports)


def test_without_an_endpoint_only_the_service_name_is_set_and_no_egress_opens() -> None:
    rendered = render(load_values("default-values.yaml"))
    data = configmap_data(rendered)
    assert {k for k in data if k.startswith("OTEL_")} == {"OTEL_SERVICE_NAME"}
    for role in ("ingest", "commands"):
        policy = rendered.named("NetworkPolicy", component_name(role))
        assert "OpenTelemetry" not in json.dumps(policy)
        ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
        assert 4318 not in ports


@pytest.mark.parametrize(
    "tracing",
    [
        {"sampler": "sometimes"},
        {"otlpEndpoint": "otel-collector:4318"},  # no scheme: the SDK would not reach it
        {"networkPolicyPorts": [0]},
        {"exporter": "grpc"},
    ],
)
def test_schema_refuses_bad_tracing_values(tracing: dict[str, Any]) -> None:
    with pytest.raises(HelmFailed, match="tracing"):
        render(merge(load_values("default-values.yaml"), {"tracing": tracing}))
