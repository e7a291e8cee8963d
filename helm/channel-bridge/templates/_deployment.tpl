{{/*
One Deployment of the bridge; call with (dict "root" $ "component" "ingest"|"commands").
Both roles run the same image with `bridge run --role <component>`.
*/}}
{{- define "channel-bridge.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $component := .component -}}
{{- $c := index $v $component -}}
{{- $name := include "channel-bridge.componentName" . -}}
{{- $secrets := include "channel-bridge.roleSecrets" . | fromYamlArray -}}
{{- $autoscaled := $c.autoscaling.hpa.enabled -}}
{{- if eq $component "commands" -}}
{{- $autoscaled = or $autoscaled $c.autoscaling.keda.enabled -}}
{{- end -}}
{{- $secretChecksum := "" -}}
{{- if $v.secrets.existingSecret -}}
{{- $secretChecksum = printf "%s/%s" $v.secrets.existingSecret (toJson $v.secrets.existingSecretKeys) | sha256sum -}}
{{- else -}}
{{- $secretChecksum = include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "channel-bridge.componentLabels" . | nindent 4 }}
  {{- with include "channel-bridge.annotations" (dict "root" $root) | trim }}
  {{- . | nindent 2 }}
  {{- end }}
spec:
  {{- if not $autoscaled }}
  replicas: {{ $c.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "channel-bridge.componentSelectorLabels" . | nindent 6 }}
  strategy:
    {{- toYaml $c.updateStrategy | nindent 4 }}
  template:
    metadata:
      labels:
        {{- include "channel-bridge.componentLabels" . | nindent 8 }}
        {{- with $c.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        checksum/secret: {{ $secretChecksum }}
        {{- if include "channel-bridge.workspacesSecret" $root }}
        checksum/workspaces: {{ toJson $v.workspaces | sha256sum }}
        {{- end }}
        {{- with $c.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "channel-bridge.serviceAccountName" $root }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      {{- with $c.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ include "channel-bridge.terminationGracePeriod" . }}
      securityContext:
        runAsNonRoot: true
        runAsUser: {{ $v.podSecurityContext.runAsUser }}
        runAsGroup: {{ $v.podSecurityContext.runAsGroup }}
        fsGroup: {{ $v.podSecurityContext.fsGroup }}
        seccompProfile:
          {{- toYaml $v.podSecurityContext.seccompProfile | nindent 10 }}
      {{- with $c.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $c.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      topologySpreadConstraints:
        {{- if $c.topologySpreadConstraints }}
        {{- tpl (toYaml $c.topologySpreadConstraints) $root | nindent 8 }}
        {{- else }}
        {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
        - maxSkew: 1
          topologyKey: {{ $key }}
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "channel-bridge.componentSelectorLabels" $ | nindent 14 }}
        {{- end }}
        {{- end }}
      containers:
        - name: bridge
          image: {{ include "channel-bridge.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args: ["run", "--role", {{ $component | quote }}]
          ports:
            - name: http
              containerPort: {{ $v.config.httpPort }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "channel-bridge.fullname" $root }}
            {{- with $v.extraEnvFrom }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- $oauth := include "channel-bridge.oauth" $root }}
          {{- if or $secrets $v.extraEnv $oauth }}
          env:
            {{- if $oauth }}
            # Not in the ConfigMap: scanners take a key naming a TOKEN for a secret there.
            - name: BRIDGE_KAFKA_OAUTH_TOKEN_ENDPOINT_URL
              value: {{ $v.config.kafka.oauth.tokenEndpointUrl | quote }}
            {{- end }}
            {{- range $secret := $secrets }}
            - name: {{ include "channel-bridge.secretEnv" $secret }}_FILE
              value: {{ printf "%s/%s" (include "channel-bridge.secretsDir" $root) (include "channel-bridge.secretKey" (dict "root" $root "name" $secret)) | quote }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- end }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.startup.periodSeconds }}
            timeoutSeconds: {{ $v.probes.startup.timeoutSeconds }}
            failureThreshold: {{ $v.probes.startup.failureThreshold }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ $v.probes.liveness.failureThreshold }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: {{ $v.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ $v.probes.readiness.failureThreshold }}
          {{- if gt (int $c.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              {{- if eq $v.lifecycle.preStopHandler "sleep" }}
              sleep:
                seconds: {{ int $c.preStopSleepSeconds }}
              {{- else }}
              exec:
                command: ["/opt/venv/bin/python", "-c", "import time; time.sleep({{ int $c.preStopSleepSeconds }})"]
              {{- end }}
          {{- end }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            runAsNonRoot: true
            runAsUser: {{ $v.podSecurityContext.runAsUser }}
            runAsGroup: {{ $v.podSecurityContext.runAsGroup }}
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            privileged: false
            capabilities:
              drop: ["ALL"]
            seccompProfile:
              {{- toYaml $v.podSecurityContext.seccompProfile | nindent 14 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if $secrets }}
            - name: secrets
              mountPath: {{ include "channel-bridge.secretsDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $v.config.kafka.caSecret.name }}
            - name: kafka-ca
              mountPath: {{ include "channel-bridge.kafkaCaDir" $root }}
              readOnly: true
            {{- end }}
            {{- if include "channel-bridge.workspacesSecret" $root }}
            - name: workspaces
              mountPath: {{ include "channel-bridge.workspacesDir" $root }}
              readOnly: true
            {{- end }}
            {{- if $v.config.kafka.clientCertSecret.name }}
            - name: kafka-client-cert
              mountPath: {{ include "channel-bridge.kafkaClientCertDir" $root }}
              readOnly: true
            {{- end }}
            {{- with $v.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $v.tmpVolume.sizeLimit }}
            {{- with $v.tmpVolume.medium }}
            medium: {{ . }}
            {{- end }}
        {{- if $secrets }}
        - name: secrets
          secret:
            secretName: {{ include "channel-bridge.secretName" $root }}
            defaultMode: 288  # 0440: owner and fsGroup read
            items:
              {{- range $secret := $secrets }}
              {{- $key := include "channel-bridge.secretKey" (dict "root" $root "name" $secret) }}
              - key: {{ $key }}
                path: {{ $key }}
              {{- end }}
        {{- end }}
        {{- with include "channel-bridge.workspacesSecret" $root }}
        - name: workspaces
          projected:
            defaultMode: 288  # 0440: owner and fsGroup read
            sources:
              {{- range $secret := prepend $v.workspaces.keySecrets . }}
              - secret:
                  name: {{ $secret }}
              {{- end }}
        {{- end }}
        {{- if $v.config.kafka.caSecret.name }}
        - name: kafka-ca
          secret:
            secretName: {{ $v.config.kafka.caSecret.name }}
            defaultMode: 292  # 0444
            items:
              - key: {{ $v.config.kafka.caSecret.key }}
                path: {{ $v.config.kafka.caSecret.key }}
        {{- end }}
        {{- with $v.config.kafka.clientCertSecret }}
        {{- if .name }}
        - name: kafka-client-cert
          secret:
            secretName: {{ .name }}
            defaultMode: 288  # 0440: owner and fsGroup read (a private key)
            items:
              - key: {{ .certKey }}
                path: {{ .certKey }}
              - key: {{ .keyKey }}
                path: {{ .keyKey }}
        {{- end }}
        {{- end }}
        {{- with $v.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end -}}
