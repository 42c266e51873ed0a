{{/* Names, labels and the facts of each service that are not values. */}}

{{- define "comfyserve.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "comfyserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: comfyserve
{{ include "comfyserve.selectorLabels" . }}
{{- end -}}

{{- define "comfyserve.selectorLabels" -}}
app.kubernetes.io/name: comfyserve
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* The in-cluster address of a service's gRPC port. */}}
{{- define "comfyserve.grpcTarget" -}}
{{- $catalog := fromYaml (include "comfyserve.catalog" .root) -}}
{{- printf "%s-%s:%v" (include "comfyserve.fullname" .root) .name (get (get $catalog .name).ports "grpc") -}}
{{- end -}}

{{- define "comfyserve.image" -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s-%s:%s" .root.Values.image.repository .name $tag -}}
{{- end -}}

{{/*
Fixed facts of each service: the ports it listens on (its settings' defaults),
how its health is asked, and whether it owns a schema to migrate.
*/}}
{{- define "comfyserve.catalog" -}}
gateway:
  prefix: GATEWAY
  ports: {http: 8000, metrics: 9101}
  probe: {http: http}
  migrate: false
auth:
  prefix: AUTH
  ports: {grpc: 50053, metrics: 9105}
  probe: {grpc: comfyserve.auth.v1.AuthService}
  migrate: true
workflow:
  prefix: WORKFLOW
  ports: {grpc: 50051, metrics: 9102}
  probe: {grpc: comfyserve.workflow.v1.WorkflowService}
  migrate: true
storage:
  prefix: STORAGE
  ports: {grpc: 50052, metrics: 9103}
  probe: {grpc: comfyserve.storage.v1.StorageService}
  migrate: true
notifier:
  prefix: NOTIFIER
  ports: {grpc: 50054, metrics: 9106}
  probe: {grpc: comfyserve.notifier.v1.NotifierService}
  migrate: true
executor:
  prefix: EXECUTOR
  # Metrics are served on the health port's /metrics.
  ports: {http: 9104}
  probe: {http: http}
  migrate: false
{{- end -}}

{{/* An env entry from a key of a secret. */}}
{{- define "comfyserve.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}
