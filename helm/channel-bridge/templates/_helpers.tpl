{{/* vim: set filetype=mustache: */}}

{{/* Chart name, truncated to 63 characters (DNS label). */}}
{{- define "channel-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object name prefix: <release>-<chart>, or the release name when it contains the chart name. */}}
{{- define "channel-bridge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's objects: <fullname>-<component>, within 63 characters. */}}
{{- define "channel-bridge.componentName" -}}
{{- printf "%s-%s" (include "channel-bridge.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component -}}
{{- end -}}

{{- define "channel-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "channel-bridge.labels" -}}
helm.sh/chart: {{ include "channel-bridge.chart" . }}
{{ include "channel-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: channel-bridge
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels: immutable, so never the version. */}}
{{- define "channel-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "channel-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of a component's objects; call with (dict "root" $ "component" "ingest"). */}}
{{- define "channel-bridge.componentLabels" -}}
{{ include "channel-bridge.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "channel-bridge.componentSelectorLabels" -}}
{{ include "channel-bridge.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* metadata.annotations block from commonAnnotations plus extra ones (a dict). */}}
{{- define "channel-bridge.annotations" -}}
{{- $all := merge (dict) (.extra | default dict) .root.Values.commonAnnotations -}}
{{- with $all }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "channel-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "channel-bridge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference: [registry/]repository(:tag|@digest). */}}
{{- define "channel-bridge.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{/*
A number as the bridge parses it: integers without exponent or ".0"
(Helm reads every YAML number as float64, and 1048576 would print as 1.048576e+06).
*/}}
{{- define "channel-bridge.number" -}}
{{- $v := float64 . -}}
{{- if eq $v (float64 (int64 $v)) -}}
{{- int64 $v -}}
{{- else -}}
{{- $v -}}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------------------------
Secrets. Logical names: birdAccessKey, webhookSigningKey, webhookSigningKeyPrevious,
kafkaSaslPassword, kafkaOauthClientSecret, kafkaSslKeyPassword. Key names in the chart-owned
Secret are fixed (the defaults of secrets.existingSecretKeys); with existingSecret they come
from existingSecretKeys.
------------------------------------------------------------------------------------ */}}
{{- define "channel-bridge.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "channel-bridge.fullname" .) | trunc 63 | trimSuffix "-") -}}
{{- end -}}

{{- define "channel-bridge.secretKeyDefaults" -}}
birdAccessKey: bird-access-key
webhookSigningKey: webhook-signing-key
webhookSigningKeyPrevious: webhook-signing-key-previous
kafkaSaslPassword: kafka-sasl-password
kafkaOauthClientSecret: kafka-oauth-client-secret
kafkaSslKeyPassword: kafka-ssl-key-password
{{- end -}}

{{/* Key of a logical secret in the Secret; call with (dict "root" $ "name" "birdAccessKey"). */}}
{{- define "channel-bridge.secretKey" -}}
{{- if .root.Values.secrets.existingSecret -}}
{{- index .root.Values.secrets.existingSecretKeys .name -}}
{{- else -}}
{{- index (include "channel-bridge.secretKeyDefaults" . | fromYaml) .name -}}
{{- end -}}
{{- end -}}

{{/* BRIDGE_* variable of a logical secret (its file variable is this + "_FILE"). */}}
{{- define "channel-bridge.secretEnv" -}}
{{- index (dict "birdAccessKey" "BRIDGE_BIRD_ACCESS_KEY" "webhookSigningKey" "BRIDGE_WEBHOOK_SIGNING_KEY" "webhookSigningKeyPrevious" "BRIDGE_WEBHOOK_SIGNING_KEY_PREVIOUS" "kafkaSaslPassword" "BRIDGE_KAFKA_SASL_PASSWORD" "kafkaOauthClientSecret" "BRIDGE_KAFKA_OAUTH_CLIENT_SECRET" "kafkaSslKeyPassword" "BRIDGE_KAFKA_SSL_KEY_PASSWORD") . -}}
{{- end -}}

{{- define "channel-bridge.sasl" -}}
{{- if hasPrefix "SASL" .Values.config.kafka.securityProtocol -}}true{{- end -}}
{{- end -}}

{{/* SASL with a username and password (PLAIN, SCRAM), OAUTHBEARER, AWS MSK IAM. */}}
{{- define "channel-bridge.saslPassword" -}}
{{- if and (include "channel-bridge.sasl" .) (not (has .Values.config.kafka.saslMechanism (list "OAUTHBEARER" "AWS_MSK_IAM"))) -}}true{{- end -}}
{{- end -}}
{{- define "channel-bridge.oauth" -}}
{{- if and (include "channel-bridge.sasl" .) (eq .Values.config.kafka.saslMechanism "OAUTHBEARER") -}}true{{- end -}}
{{- end -}}
{{- define "channel-bridge.mskIam" -}}
{{- if and (include "channel-bridge.sasl" .) (eq .Values.config.kafka.saslMechanism "AWS_MSK_IAM") -}}true{{- end -}}
{{- end -}}
{{- define "channel-bridge.kafkaTls" -}}
{{- if has .Values.config.kafka.securityProtocol (list "SSL" "SASL_SSL") -}}true{{- end -}}
{{- end -}}

{{/* The password of an encrypted client key is given: a key in the existing Secret, or a value. */}}
{{- define "channel-bridge.sslKeyPasswordGiven" -}}
{{- $s := .Values.secrets -}}
{{- if or (and $s.existingSecret $s.existingSecretKeys.kafkaSslKeyPassword) (and (not $s.existingSecret) $s.kafkaSslKeyPassword) -}}true{{- end -}}
{{- end -}}
{{/* Mutual TLS with an encrypted client key: the pods and KEDA need its password. */}}
{{- define "channel-bridge.sslKeyPassword" -}}
{{- if and (include "channel-bridge.kafkaTls" .) .Values.config.kafka.clientCertSecret.name (include "channel-bridge.sslKeyPasswordGiven" .) -}}true{{- end -}}
{{- end -}}

{{/*
The logical secrets a role needs, as a YAML list; mirrors bridge.config.Config.require:
ingest: the signing key unless insecure (the previous key while rotating), the Bird
AccessKey with ensureSubscriptions; commands: the Bird AccessKey; both: the SASL password
(PLAIN, SCRAM) or the OIDC client secret (OAUTHBEARER), and the password of an encrypted
client key (mutual TLS) when one is given.
*/}}
{{- define "channel-bridge.roleSecrets" -}}
{{- $v := .root.Values -}}
{{- $names := list -}}
{{- if include "channel-bridge.workspacesSecret" .root -}}
{{- /* several workspaces: their keys come with the workspaces file */ -}}
{{- else if eq .component "ingest" -}}
{{- if not $v.config.webhook.insecure -}}
{{- $names = append $names "webhookSigningKey" -}}
{{- end -}}
{{- if or (and $v.secrets.existingSecret $v.secrets.existingSecretKeys.webhookSigningKeyPrevious) (and (not $v.secrets.existingSecret) $v.secrets.webhookSigningKeyPrevious) -}}
{{- $names = append $names "webhookSigningKeyPrevious" -}}
{{- end -}}
{{- if $v.config.webhook.ensureSubscriptions -}}
{{- $names = append $names "birdAccessKey" -}}
{{- end -}}
{{- else -}}
{{- $names = append $names "birdAccessKey" -}}
{{- end -}}
{{- if include "channel-bridge.saslPassword" .root -}}
{{- $names = append $names "kafkaSaslPassword" -}}
{{- end -}}
{{- if include "channel-bridge.oauth" .root -}}
{{- $names = append $names "kafkaOauthClientSecret" -}}
{{- end -}}
{{- if include "channel-bridge.sslKeyPassword" .root -}}
{{- $names = append $names "kafkaSslKeyPassword" -}}
{{- end -}}
{{- toYaml $names -}}
{{- end -}}

{{/* Every logical secret a value must exist for (union over the enabled roles). */}}
{{- define "channel-bridge.neededSecrets" -}}
{{- $names := list -}}
{{- range $component := list "ingest" "commands" -}}
{{- if (index $.Values $component).enabled -}}
{{- $names = concat $names (include "channel-bridge.roleSecrets" (dict "root" $ "component" $component) | fromYamlArray) -}}
{{- end -}}
{{- end -}}
{{- toYaml (uniq $names) -}}
{{- end -}}

{{/* Path where secret files are mounted. */}}
{{- define "channel-bridge.secretsDir" -}}/etc/channel-bridge/secrets{{- end -}}
{{- define "channel-bridge.workspacesDir" -}}/etc/channel-bridge/workspaces{{- end -}}

{{/* The Secret with the workspaces file: existing, or the chart's from workspaces.items; empty: one workspace. */}}
{{- define "channel-bridge.workspacesSecret" -}}
{{- if .Values.workspaces.existingSecret -}}
{{- .Values.workspaces.existingSecret -}}
{{- else if .Values.workspaces.items -}}
{{- printf "%s-workspaces" (include "channel-bridge.fullname" . | trunc 52 | trimSuffix "-") -}}
{{- end -}}
{{- end -}}
{{- define "channel-bridge.kafkaCaDir" -}}/etc/channel-bridge/kafka-ca{{- end -}}
{{- define "channel-bridge.kafkaClientCertDir" -}}/etc/channel-bridge/kafka-client{{- end -}}

{{/* Derived terminationGracePeriodSeconds of a role (drain + preStop + margin), validated override. */}}
{{- define "channel-bridge.terminationGracePeriod" -}}
{{- $v := .root.Values -}}
{{- $c := index $v .component -}}
{{- $drain := ceil $v.config.shutdownTimeoutSeconds | int -}}
{{- $floor := add $drain (int $c.preStopSleepSeconds) -}}
{{- if kindIs "invalid" $c.terminationGracePeriodSeconds -}}
{{- add $floor (int $v.lifecycle.terminationMarginSeconds) -}}
{{- else -}}
{{- if le (int $c.terminationGracePeriodSeconds) $floor -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must exceed config.shutdownTimeoutSeconds + %s.preStopSleepSeconds (%d), or pods are killed mid-drain" .component (int $c.terminationGracePeriodSeconds) .component $floor) -}}
{{- end -}}
{{- int $c.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* Kafka ports from config.kafka.bootstrapServers (or networkPolicy.kafka.ports). */}}
{{- define "channel-bridge.kafkaPorts" -}}
{{- $ports := list -}}
{{- if .Values.networkPolicy.kafka.ports -}}
{{- $ports = .Values.networkPolicy.kafka.ports -}}
{{- else -}}
{{- range splitList "," .Values.config.kafka.bootstrapServers -}}
{{- $port := regexFind "[0-9]+$" (trim .) -}}
{{- if and $port (contains ":" .) -}}
{{- $ports = append $ports (int $port) -}}
{{- else -}}
{{- $ports = append $ports 9092 -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (uniq $ports) -}}
{{- end -}}

{{/* Bird API ports from config.bird.apiUrl (or networkPolicy.bird.ports). */}}
{{- define "channel-bridge.birdPorts" -}}
{{- if .Values.networkPolicy.bird.ports -}}
{{- toYaml (uniq .Values.networkPolicy.bird.ports) -}}
{{- else -}}
{{- $u := urlParse .Values.config.bird.apiUrl -}}
{{- $port := regexFind ":[0-9]+$" $u.host | trimPrefix ":" -}}
{{- if $port -}}
{{- toYaml (list (int $port)) -}}
{{- else if eq $u.scheme "http" -}}
{{- toYaml (list 80) -}}
{{- else -}}
{{- toYaml (list 443) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Largest useful replica count for the commands role: the topic's partition count. */}}
{{- define "channel-bridge.commandsMaxReplicas" -}}
{{- $partitions := int .root.Values.config.kafka.topicPartitions -}}
{{- if kindIs "invalid" .value -}}
{{- $partitions -}}
{{- else if gt (int .value) $partitions -}}
{{- fail (printf "%s (%d) exceeds config.kafka.topicPartitions (%d): consumers beyond the partition count sit idle" .name (int .value) $partitions) -}}
{{- else -}}
{{- int .value -}}
{{- end -}}
{{- end -}}

{{/* Checks that span several values (the schema covers single values). */}}
{{- define "channel-bridge.validate" -}}
{{- $v := .Values -}}
{{- if and $v.commands.autoscaling.hpa.enabled $v.commands.autoscaling.keda.enabled -}}
{{- fail "commands.autoscaling: hpa and keda are both enabled; KEDA creates its own HPA, so enable only one" -}}
{{- end -}}
{{- if not (or $v.ingest.enabled $v.commands.enabled) -}}
{{- fail "ingest.enabled and commands.enabled are both false: nothing to deploy" -}}
{{- end -}}
{{- $_ := required "config.kafka.bootstrapServers is required (host:port,...)" $v.config.kafka.bootstrapServers -}}
{{- if include "channel-bridge.saslPassword" . -}}
{{- $_ := required (printf "config.kafka.saslUsername is required with securityProtocol %s" $v.config.kafka.securityProtocol) $v.config.kafka.saslUsername -}}
{{- end -}}
{{- if include "channel-bridge.oauth" . -}}
{{- $_ := required "config.kafka.oauth.tokenEndpointUrl is required with saslMechanism OAUTHBEARER" $v.config.kafka.oauth.tokenEndpointUrl -}}
{{- $_ := required "config.kafka.oauth.clientId is required with saslMechanism OAUTHBEARER" $v.config.kafka.oauth.clientId -}}
{{- end -}}
{{- if eq $v.config.kafka.saslMechanism "AWS_MSK_IAM" -}}
{{- if ne $v.config.kafka.securityProtocol "SASL_SSL" -}}
{{- fail "config.kafka.saslMechanism AWS_MSK_IAM needs securityProtocol SASL_SSL (MSK accepts IAM only over TLS)" -}}
{{- end -}}
{{- $_ := required "config.kafka.awsRegion is required with saslMechanism AWS_MSK_IAM" $v.config.kafka.awsRegion -}}
{{- end -}}
{{- if and $v.config.kafka.clientCertSecret.name (not (include "channel-bridge.kafkaTls" .)) -}}
{{- fail (printf "config.kafka.clientCertSecret needs securityProtocol SSL or SASL_SSL, not %s" $v.config.kafka.securityProtocol) -}}
{{- end -}}
{{- if and (include "channel-bridge.sslKeyPasswordGiven" .) (not $v.config.kafka.clientCertSecret.name) -}}
{{- fail "the Kafka client key password (secrets.kafkaSslKeyPassword / secrets.existingSecretKeys.kafkaSslKeyPassword) needs config.kafka.clientCertSecret.name: it decrypts that Secret's key" -}}
{{- end -}}
{{- if and $v.ingest.enabled (not $v.config.webhook.insecure) -}}
{{- $_ := required "config.webhook.publicUrl is required: Bird signs the URL it posts to (or set config.webhook.insecure=true)" $v.config.webhook.publicUrl -}}
{{- end -}}
{{- if and $v.workspaces.existingSecret $v.workspaces.items -}}
{{- fail "workspaces.items and workspaces.existingSecret: give the workspaces one way, not both" -}}
{{- end -}}
{{- if include "channel-bridge.workspacesSecret" . -}}
{{- if $v.config.bird.organizationId -}}
{{- fail "config.bird.organizationId: leave it empty with workspaces; each workspace names its organization in the workspaces file" -}}
{{- end -}}
{{- else if $v.workspaces.keySecrets -}}
{{- fail "workspaces.keySecrets needs workspaces.existingSecret (the Secret with the workspaces file)" -}}
{{- end -}}
{{- if and $v.config.webhook.ensureSubscriptions (not (include "channel-bridge.workspacesSecret" .)) -}}
{{- $_ := required "config.bird.organizationId is required with config.webhook.ensureSubscriptions" $v.config.bird.organizationId -}}
{{- $_ := required "config.bird.workspaceId is required with config.webhook.ensureSubscriptions" $v.config.bird.workspaceId -}}
{{- $_ := required "config.webhook.publicUrl is required with config.webhook.ensureSubscriptions" $v.config.webhook.publicUrl -}}
{{- end -}}
{{- if and $v.ingress.enabled (not $v.ingest.enabled) -}}
{{- fail "ingress.enabled needs ingest.enabled: the Ingress routes to the ingest Service" -}}
{{- end -}}
{{- if and $v.httpRoute.enabled (not $v.ingest.enabled) -}}
{{- fail "httpRoute.enabled needs ingest.enabled: the HTTPRoute routes to the ingest Service" -}}
{{- end -}}
{{- end -}}

{{/* A map as `k1=v1,k2=v2`, keys sorted (OTEL_RESOURCE_ATTRIBUTES). */}}
{{- define "channel-bridge.keyValues" -}}
{{- $pairs := list -}}
{{- range $k := keys . | sortAlpha -}}
{{- $pairs = append $pairs (printf "%s=%v" $k (get $ $k)) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* Egress ports of the OTLP collector: tracing.networkPolicyPorts, else the endpoint's port. */}}
{{- define "channel-bridge.otlpPorts" -}}
{{- if .Values.tracing.networkPolicyPorts -}}
{{- toYaml (uniq .Values.tracing.networkPolicyPorts) -}}
{{- else -}}
{{- $u := urlParse .Values.tracing.otlpEndpoint -}}
{{- $port := regexFind ":[0-9]+$" $u.host | trimPrefix ":" -}}
{{- if $port -}}
{{- toYaml (list (int $port)) -}}
{{- else if eq $u.scheme "http" -}}
{{- toYaml (list 80) -}}
{{- else -}}
{{- toYaml (list 443) -}}
{{- end -}}
{{- end -}}
{{- end -}}
