{{/* Chart name. */}}
{{- define "smooch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the prefix of every resource. */}}
{{- define "smooch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels shared by every resource. */}}
{{- define "smooch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "smooch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: smooch
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the release (every role). */}}
{{- define "smooch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "smooch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The roles, one Deployment each. name: the subcommand and the resource suffix; key: the
values key; kind: http (gateway), grpc or worker; env: the SMOOCH_<ENV>_* prefix.
*/}}
{{- define "smooch.roles" -}}
- {name: gateway, key: gateway, kind: http, env: GATEWAY}
- {name: users, key: users, kind: grpc, env: USERS}
- {name: conversations, key: conversations, kind: grpc, env: CONVERSATIONS}
- {name: media, key: media, kind: grpc, env: MEDIA}
- {name: webhooks, key: webhooks, kind: grpc, env: WEBHOOKS}
- {name: webhook-worker, key: webhookWorker, kind: worker, env: WEBHOOK_WORKER}
- {name: push, key: push, kind: worker, env: PUSH}
{{- end }}

{{/* Labels of one role: call with (dict "root" $ "role" $role). */}}
{{- define "smooch.roleSelectorLabels" -}}
{{ include "smooch.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role.name }}
{{- end }}

{{- define "smooch.roleLabels" -}}
{{ include "smooch.labels" .root }}
app.kubernetes.io/component: {{ .role.name }}
{{- end }}

{{/* The image reference. */}}
{{- define "smooch.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "smooch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "smooch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret the roles read. */}}
{{- define "smooch.secretName" -}}
{{- default (include "smooch.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* SMOOCH_PUBLIC_URL. */}}
{{- define "smooch.publicUrl" -}}
{{- if .Values.config.publicUrl }}
{{- .Values.config.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- $host := (first .Values.ingress.hosts).host }}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) $host }}
{{- else }}
{{- printf "http://%s-gateway" (include "smooch.fullname" .) }}
{{- end }}
{{- end }}

{{/* Whether a role has an admin (health and metrics) port. */}}
{{- define "smooch.hasAdmin" -}}
{{- if or (eq .role.kind "worker") (and (eq .role.kind "grpc") .root.Values.admin.enabled) }}true{{- end }}
{{- end }}

{{/* Secret-backed connection settings: call with the root context. */}}
{{- define "smooch.secretEnv" -}}
- name: SMOOCH_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "smooch.secretName" . }}
      key: {{ .Values.secrets.keys.databaseUrl }}
- name: SMOOCH_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "smooch.secretName" . }}
      key: {{ .Values.secrets.keys.redisUrl }}
- name: SMOOCH_AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "smooch.secretName" . }}
      key: {{ .Values.secrets.keys.amqpUrl }}
{{- end }}

{{/* The operator's account key (optional keys): call with the root context. */}}
{{- define "smooch.accountKeyEnv" -}}
- name: SMOOCH_ACCOUNT_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ include "smooch.secretName" . }}
      key: {{ .Values.secrets.keys.accountKeyId }}
      optional: true
- name: SMOOCH_ACCOUNT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "smooch.secretName" . }}
      key: {{ .Values.secrets.keys.accountSecret }}
      optional: true
{{- end }}

{{/* The key that seals integration secrets (the users role): call with the root context. */}}
{{- define "smooch.secretsKeyEnv" -}}
- name: SMOOCH_SECRETS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "smooch.secretName" . }}
      key: {{ .Values.secrets.keys.secretsKey }}
{{- end }}

{{/* Default probes of one role: call with (dict "root" $ "role" $role "values" $v). */}}
{{- define "smooch.defaultProbes" -}}
{{- $p := .root.Values.probes }}
{{- $timing := dict "periodSeconds" $p.periodSeconds "timeoutSeconds" $p.timeoutSeconds "failureThreshold" $p.failureThreshold }}
{{- $startupTiming := dict "periodSeconds" $p.periodSeconds "timeoutSeconds" $p.timeoutSeconds "failureThreshold" $p.startupFailureThreshold }}
{{- $live := dict }}
{{- $ready := dict }}
{{- if eq .role.kind "http" }}
{{- /* /healthz also checks the backing gRPC roles: liveness only checks the listener so a
       backend outage never restarts the gateways. */}}
{{- $live = dict "tcpSocket" (dict "port" "http") }}
{{- $ready = dict "httpGet" (dict "path" (ternary "/readyz" "/healthz" (eq $p.mode "http")) "port" "http") }}
{{- if eq $p.mode "http" }}
{{- $live = dict "httpGet" (dict "path" "/healthz" "port" "http") }}
{{- end }}
{{- else if eq .role.kind "worker" }}
{{- $live = dict "httpGet" (dict "path" "/healthz" "port" "admin") }}
{{- $ready = dict "httpGet" (dict "path" (ternary "/readyz" "/healthz" (eq $p.mode "http")) "port" "admin") }}
{{- else if eq $p.mode "http" }}
{{- $live = dict "httpGet" (dict "path" "/healthz" "port" "admin") }}
{{- $ready = dict "httpGet" (dict "path" "/readyz" "port" "admin") }}
{{- else }}
{{- $live = dict "grpc" (dict "port" (int .values.grpcPort)) }}
{{- $ready = dict "grpc" (dict "port" (int .values.grpcPort)) }}
{{- end }}
livenessProbe:
  {{- toYaml (default (merge (deepCopy $live) $timing) .values.livenessProbe) | nindent 2 }}
readinessProbe:
  {{- toYaml (default (merge (deepCopy $ready) $timing) .values.readinessProbe) | nindent 2 }}
startupProbe:
  {{- toYaml (default (merge (deepCopy $startupTiming) $live) .values.startupProbe) | nindent 2 }}
{{- end }}
