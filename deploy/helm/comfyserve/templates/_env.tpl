{{/*
Each service's settings, by its own prefix. Every name here must be a setting
the service reads (tests/deploy checks it against the settings classes).
Called with (dict "root" $ "name" <service>).
*/}}

{{- define "comfyserve.env" -}}
{{- $v := .root.Values -}}
{{- $catalog := fromYaml (include "comfyserve.catalog" .root) -}}
{{- $p := (get $catalog .name).prefix -}}
{{- $creds := $v.credentials.existingSecret -}}
- name: {{ $p }}_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .name | quote }}
{{- with $v.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $v.otel.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $v.otel.samplerArg | quote }}
{{- end }}
{{- if ne .name "auth" }}
- name: {{ $p }}_AUTH_GRPC_TARGET
  value: {{ include "comfyserve.grpcTarget" (dict "root" .root "name" "auth") | quote }}
- name: {{ $p }}_AUTH_ISSUER
  value: {{ $v.tokens.issuer | quote }}
- name: {{ $p }}_AUTH_AUDIENCE
  value: {{ $v.tokens.audience | quote }}
{{- else }}
- name: AUTH_ISSUER
  value: {{ $v.tokens.issuer | quote }}
- name: AUTH_AUDIENCE
  value: {{ $v.tokens.audience | quote }}
{{- end }}
{{- if has .name (list "gateway" "workflow" "executor" "notifier") }}
{{ include "comfyserve.secretEnv" (dict "env" (printf "%s_SERVICE_KEY" $p) "secret" $creds "key" (printf "%s-service-key" .name)) }}
{{- end }}
{{- if has .name (list "auth" "workflow" "storage" "notifier") }}
{{ include "comfyserve.secretEnv" (dict "env" (printf "%s_DATABASE_URL" $p) "secret" $v.postgres.existingSecret "key" (get $v.postgres.urlKeys .name)) }}
{{- end }}
{{- if has .name (list "workflow" "storage" "executor" "notifier") }}
{{- if $v.kafka.existingSecret }}
{{ include "comfyserve.secretEnv" (dict "env" (printf "%s_KAFKA_BOOTSTRAP_SERVERS" $p) "secret" $v.kafka.existingSecret "key" $v.kafka.bootstrapServersKey) }}
{{- else }}
- name: {{ $p }}_KAFKA_BOOTSTRAP_SERVERS
  value: {{ $v.kafka.bootstrapServers | quote }}
{{- end }}
{{- end }}
{{- with (get $catalog .name).ports }}
{{- if .grpc }}
- name: {{ $p }}_GRPC_PORT
  value: {{ .grpc | quote }}
{{- end }}
{{- if .metrics }}
- name: {{ $p }}_METRICS_PORT
  value: {{ .metrics | quote }}
{{- end }}
{{- end }}
{{- include (printf "comfyserve.env.%s" .name) . }}
{{- range $name, $value := (get $v .name).env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{- define "comfyserve.env.gateway" -}}
{{- $v := .root.Values }}
- name: GATEWAY_HOST
  value: "0.0.0.0"
- name: GATEWAY_PORT
  value: "8000"
- name: GATEWAY_WORKFLOW_GRPC_TARGET
  value: {{ include "comfyserve.grpcTarget" (dict "root" .root "name" "workflow") | quote }}
- name: GATEWAY_STORAGE_GRPC_TARGET
  value: {{ include "comfyserve.grpcTarget" (dict "root" .root "name" "storage") | quote }}
{{- with $v.publicBaseUrl }}
- name: GATEWAY_PUBLIC_BASE_URL
  value: {{ . | quote }}
{{- end }}
{{ include "comfyserve.secretEnv" (dict "env" "GATEWAY_REDIS_URL" "secret" $v.redis.existingSecret "key" $v.redis.urlKey) }}
{{- if $v.gateway.bootstrapApiKeys }}
{{ include "comfyserve.secretEnv" (dict "env" "GATEWAY_API_KEYS" "secret" $v.credentials.existingSecret "key" "gateway-api-keys") }}
{{- end }}
{{- end -}}

{{- define "comfyserve.env.auth" -}}
{{- $creds := .root.Values.credentials.existingSecret }}
- name: AUTH_ENVIRONMENT
  value: production
{{ include "comfyserve.secretEnv" (dict "env" "AUTH_KEY_ENCRYPTION_SECRET" "secret" $creds "key" "auth-key-encryption-secret") }}
{{ include "comfyserve.secretEnv" (dict "env" "AUTH_SERVICE_KEYS" "secret" $creds "key" "auth-service-keys") }}
{{- end -}}

{{- define "comfyserve.env.workflow" }}
{{- $v := .root.Values }}
- name: WORKFLOW_STORAGE_GRPC_TARGET
  value: {{ include "comfyserve.grpcTarget" (dict "root" .root "name" "storage") | quote }}
{{ include "comfyserve.secretEnv" (dict "env" "WORKFLOW_REDIS_URL" "secret" $v.redis.existingSecret "key" $v.redis.urlKey) }}
{{- end -}}

{{- define "comfyserve.env.storage" -}}
{{- $s3 := .root.Values.s3 }}
- name: STORAGE_S3_ENDPOINT
  value: {{ $s3.endpoint | quote }}
{{- with $s3.publicEndpoint }}
- name: STORAGE_S3_PUBLIC_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: STORAGE_S3_BUCKET
  value: {{ $s3.bucket | quote }}
- name: STORAGE_S3_REGION
  value: {{ $s3.region | quote }}
- name: STORAGE_S3_SECURE
  value: {{ $s3.secure | quote }}
{{ include "comfyserve.secretEnv" (dict "env" "STORAGE_S3_ACCESS_KEY" "secret" $s3.existingSecret "key" $s3.accessKeyKey) }}
{{ include "comfyserve.secretEnv" (dict "env" "STORAGE_S3_SECRET_KEY" "secret" $s3.existingSecret "key" $s3.secretKeyKey) }}
{{- end -}}

{{- define "comfyserve.env.notifier" -}}
{{- $v := .root.Values }}
- name: NOTIFIER_WORKFLOW_GRPC_TARGET
  value: {{ include "comfyserve.grpcTarget" (dict "root" .root "name" "workflow") | quote }}
- name: NOTIFIER_STORAGE_GRPC_TARGET
  value: {{ include "comfyserve.grpcTarget" (dict "root" .root "name" "storage") | quote }}
{{- with $v.publicBaseUrl }}
- name: NOTIFIER_PUBLIC_BASE_URL
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "comfyserve.env.executor" -}}
{{- $x := .root.Values.executor }}
- name: EXECUTOR_POOL
  value: {{ $x.pool | quote }}
- name: EXECUTOR_WORKFLOW_GRPC_TARGET
  value: {{ include "comfyserve.grpcTarget" (dict "root" .root "name" "workflow") | quote }}
- name: EXECUTOR_STORAGE_GRPC_TARGET
  value: {{ include "comfyserve.grpcTarget" (dict "root" .root "name" "storage") | quote }}
- name: EXECUTOR_HTTP_HOST
  value: "0.0.0.0"
- name: EXECUTOR_HTTP_PORT
  value: "9104"
# The pod's name: stable for its life, unique in the fleet.
- name: EXECUTOR_WORKER_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: EXECUTOR_SCRATCH_DIR
  value: /scratch
{{- if eq $x.comfyui.mode "sidecar" }}
- name: EXECUTOR_COMFYUI_URL
  value: {{ printf "http://127.0.0.1:%v" $x.comfyui.port | quote }}
{{- else }}
- name: EXECUTOR_COMFYUI_PATH
  value: {{ $x.comfyui.path | quote }}
- name: EXECUTOR_COMFYUI_PYTHON
  value: {{ $x.comfyui.python | quote }}
- name: EXECUTOR_CPU
  value: {{ eq (int $x.gpu.count) 0 | quote }}
{{- end }}
{{- end -}}
