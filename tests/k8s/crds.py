"""Structural JSON schemas for the custom resources the chart renders (pure data).

kubernetes-validate ships only the built-in API. These schemas cover the fields of
ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1), ScaledObject and
TriggerAuthentication (keda.sh/v1alpha1) and HTTPRoute (gateway.networking.k8s.io/v1) as
their upstream CRDs define them; unknown fields are refused, so a typo fails here as it
would at `kubectl apply`. Free-form sub-objects (label selectors, HPA behavior) are typed as
objects only.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
OBJECT: Schema = {"type": "object"}
STRING_MAP: Schema = {"type": "object", "additionalProperties": STRING}
DURATION: Schema = {
    "type": "string",
    # Prometheus duration: 30s, 1m30s, 500ms ...
    "pattern": r"^(0|([0-9]+(y|w|d|h|m|s|ms))+)$",
}


def closed(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def resource(api_version: str, kind: str, spec: Schema) -> Schema:
    metadata = closed(
        {
            "name": STRING,
            "namespace": STRING,
            "labels": STRING_MAP,
            "annotations": STRING_MAP,
        },
        required=("name",),
    )
    return closed(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": metadata,
            "spec": spec,
        },
        required=("apiVersion", "kind", "metadata", "spec"),
    )


LABEL_SELECTOR = closed({"matchLabels": STRING_MAP, "matchExpressions": array(OBJECT)})

RELABEL_CONFIG = closed(
    {
        "action": {
            "enum": [
                "replace",
                "Replace",
                "keep",
                "Keep",
                "drop",
                "Drop",
                "hashmod",
                "HashMod",
                "labelmap",
                "LabelMap",
                "labeldrop",
                "LabelDrop",
                "labelkeep",
                "LabelKeep",
                "lowercase",
                "Lowercase",
                "uppercase",
                "Uppercase",
                "keepequal",
                "KeepEqual",
                "dropequal",
                "DropEqual",
            ]
        },
        "modulus": INT,
        "regex": STRING,
        "replacement": STRING,
        "separator": STRING,
        "sourceLabels": array({"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"}),
        "targetLabel": STRING,
    }
)

SERVICE_MONITOR = resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    closed(
        {
            "jobLabel": STRING,
            "targetLabels": array(STRING),
            "podTargetLabels": array(STRING),
            "sampleLimit": INT,
            "selector": LABEL_SELECTOR,
            "namespaceSelector": closed({"any": BOOL, "matchNames": array(STRING)}),
            "endpoints": array(
                closed(
                    {
                        "port": STRING,
                        "targetPort": {"type": ["integer", "string"]},
                        "path": STRING,
                        "scheme": {"enum": ["http", "https"]},
                        "interval": DURATION,
                        "scrapeTimeout": DURATION,
                        "honorLabels": BOOL,
                        "honorTimestamps": BOOL,
                        "relabelings": array(RELABEL_CONFIG),
                        "metricRelabelings": array(RELABEL_CONFIG),
                        "tlsConfig": OBJECT,
                        "params": OBJECT,
                    }
                )
            ),
        },
        required=("selector", "endpoints"),
    ),
)

SCALED_OBJECT = resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    closed(
        {
            "scaleTargetRef": closed(
                {
                    "apiVersion": STRING,
                    "kind": STRING,
                    "name": STRING,
                    "envSourceContainerName": STRING,
                },
                required=("name",),
            ),
            "pollingInterval": INT,
            "cooldownPeriod": INT,
            "initialCooldownPeriod": INT,
            "idleReplicaCount": INT,
            "minReplicaCount": INT,
            "maxReplicaCount": INT,
            "fallback": closed(
                {"failureThreshold": INT, "replicas": INT},
                required=("failureThreshold", "replicas"),
            ),
            "advanced": closed(
                {
                    "restoreToOriginalReplicaCount": BOOL,
                    "horizontalPodAutoscalerConfig": closed({"name": STRING, "behavior": OBJECT}),
                    "scalingModifiers": OBJECT,
                }
            ),
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": closed(
                    {
                        "type": STRING,
                        "name": STRING,
                        "useCachedMetrics": BOOL,
                        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        # KEDA reads trigger metadata as strings only.
                        "metadata": STRING_MAP,
                        "authenticationRef": closed(
                            {
                                "name": STRING,
                                "kind": {
                                    "enum": [
                                        "TriggerAuthentication",
                                        "ClusterTriggerAuthentication",
                                    ]
                                },
                            },
                            required=("name",),
                        ),
                    },
                    required=("type", "metadata"),
                ),
            },
        },
        required=("scaleTargetRef", "triggers"),
    ),
)

TARGET_REF = closed(
    {"parameter": STRING, "name": STRING, "key": STRING}, required=("parameter", "name", "key")
)

TRIGGER_AUTHENTICATION = resource(
    "keda.sh/v1alpha1",
    "TriggerAuthentication",
    closed(
        {
            "secretTargetRef": array(TARGET_REF),
            "configMapTargetRef": array(TARGET_REF),
            "env": array(
                closed(
                    {"parameter": STRING, "name": STRING, "containerName": STRING},
                    required=("parameter", "name"),
                )
            ),
            "podIdentity": OBJECT,
            "hashiCorpVault": OBJECT,
            "azureKeyVault": OBJECT,
            "awsSecretManager": OBJECT,
            "gcpSecretManager": OBJECT,
        }
    ),
)

GATEWAY_NAME = {"type": "string", "minLength": 1, "maxLength": 253}

HTTP_ROUTE = resource(
    "gateway.networking.k8s.io/v1",
    "HTTPRoute",
    closed(
        {
            "parentRefs": array(
                closed(
                    {
                        "group": STRING,
                        "kind": STRING,
                        "namespace": STRING,
                        "name": GATEWAY_NAME,
                        "sectionName": STRING,
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    },
                    required=("name",),
                )
            ),
            "hostnames": array(STRING),
            "rules": array(
                closed(
                    {
                        "name": STRING,
                        "matches": array(
                            closed(
                                {
                                    "path": closed(
                                        {
                                            "type": {
                                                "enum": ["Exact", "PathPrefix", "RegularExpression"]
                                            },
                                            "value": STRING,
                                        }
                                    ),
                                    "headers": array(OBJECT),
                                    "queryParams": array(OBJECT),
                                    "method": {
                                        "enum": [
                                            "GET",
                                            "HEAD",
                                            "POST",
                                            "PUT",
                                            "DELETE",
                                            "CONNECT",
                                            "OPTIONS",
                                            "TRACE",
                                            "PATCH",
                                        ]
                                    },
                                }
                            )
                        ),
                        "filters": array(OBJECT),
                        "backendRefs": array(
                            closed(
                                {
                                    "group": STRING,
                                    "kind": STRING,
                                    "name": GATEWAY_NAME,
                                    "namespace": STRING,
                                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                    "weight": INT,
                                    "filters": array(OBJECT),
                                },
                                required=("name",),
                            )
                        ),
                        "timeouts": closed({"request": STRING, "backendRequest": STRING}),
                    }
                )
            ),
        }
    ),
)

RULE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "alert": STRING,
        "record": STRING,
        "expr": {"type": ["string", "integer"]},
        "for": DURATION,
        "keep_firing_for": DURATION,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    "required": ["expr"],
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
}

PROMETHEUS_RULE = resource(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    closed(
        {
            "groups": array(
                closed(
                    {
                        "name": {"type": "string", "minLength": 1},
                        "interval": DURATION,
                        "query_offset": DURATION,
                        "limit": INT,
                        "partial_response_strategy": STRING,
                        "labels": STRING_MAP,
                        "rules": array(RULE),
                    },
                    required=("name",),
                )
            ),
        }
    ),
)

SCHEMAS: dict[tuple[str, str], Schema] = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTHENTICATION,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTP_ROUTE,
}
