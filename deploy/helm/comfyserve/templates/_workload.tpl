{{/*
The one workload template every service uses: a Deployment, its Service, its
PodDisruptionBudget, its NetworkPolicy and (by value) its ServiceMonitor.

Called with (dict "root" $ "name" <service>) and, for pods with more in them
(the executor), "containers" (extra containers), "volumes", "mounts",
"resources" (the main container's, instead of the service's values), and
"readOnlyRoot" (false where the main container must write beside its code).
*/}}

{{- define "comfyserve.probes" -}}
{{- $probe := .probe -}}
{{- if $probe.http }}
startupProbe:
  httpGet: {path: /health/live, port: {{ $probe.http }}}
  periodSeconds: 5
  failureThreshold: {{ .startupFailures | default 24 }}
livenessProbe:
  httpGet: {path: /health/live, port: {{ $probe.http }}}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /health/ready, port: {{ $probe.http }}}
  periodSeconds: 5
  failureThreshold: 2
{{- else }}
{{- /* gRPC services answer grpc.health.v1: "" while alive, their own service while ready. */}}
startupProbe:
  grpc: {port: {{ .ports.grpc }}}
  periodSeconds: 5
  failureThreshold: 24
livenessProbe:
  grpc: {port: {{ .ports.grpc }}}
  periodSeconds: 10
  failureThreshold: 3
readinessProbe:
  grpc: {port: {{ .ports.grpc }}, service: {{ $probe.grpc }}}
  periodSeconds: 5
  failureThreshold: 2
{{- end }}
{{- end -}}

{{- define "comfyserve.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $svc := get $v .name -}}
{{- $facts := get (fromYaml (include "comfyserve.catalog" $root)) .name -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
containers:
  - name: {{ .name }}
    image: {{ include "comfyserve.image" (dict "root" $root "name" .name) }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    command: [python, -m, {{ printf "comfyserve.%s" .name }}]
    args: [{{ .command | default "serve" }}]
    env:
      {{- include "comfyserve.env" (dict "root" $root "name" .name) | nindent 6 }}
    {{- if not .command }}
    ports:
      {{- range $port, $number := $facts.ports }}
      - name: {{ $port }}
        containerPort: {{ $number }}
      {{- end }}
    {{- include "comfyserve.probes" (dict "probe" $facts.probe "ports" $facts.ports "startupFailures" .startupFailures) | trim | nindent 4 }}
    {{- end }}
    resources:
      {{- toYaml (.resources | default $svc.resources) | nindent 6 }}
    securityContext:
      {{- $readOnly := ternary .readOnlyRoot true (hasKey . "readOnlyRoot") }}
      {{- toYaml (merge (dict "readOnlyRootFilesystem" $readOnly) (omit $v.securityContext "readOnlyRootFilesystem")) | nindent 6 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      {{- with .mounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  {{- with .containers }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
volumes:
  # /tmp on an emptyDir, so the root filesystem can be read-only.
  - name: tmp
    emptyDir: {}
  {{- with .volumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $svc.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "comfyserve.workload" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $svc := get $v .name -}}
{{- $facts := get (fromYaml (include "comfyserve.catalog" $root)) .name -}}
{{- $fullname := printf "%s-%s" (include "comfyserve.fullname" $root) .name -}}
{{- $labels := dict "root" $root "name" .name -}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "comfyserve.labels" $labels | nindent 4 }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "comfyserve.selectorLabels" $labels | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "comfyserve.labels" $labels | nindent 8 }}
    spec:
      {{- with .terminationGracePeriodSeconds }}
      terminationGracePeriodSeconds: {{ . }}
      {{- end }}
      {{- include "comfyserve.podSpec" . | nindent 6 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "comfyserve.labels" $labels | nindent 4 }}
spec:
  type: {{ dig "service" "type" "ClusterIP" $svc }}
  selector:
    {{- include "comfyserve.selectorLabels" $labels | nindent 4 }}
  ports:
    {{- range $port, $number := $facts.ports }}
    - name: {{ $port }}
      port: {{ ternary (dig "service" "port" $number $svc) $number (eq $port "http") }}
      targetPort: {{ $port }}
    {{- end }}
{{- if $svc.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "comfyserve.labels" $labels | nindent 4 }}
spec:
  {{- with $svc.podDisruptionBudget.minAvailable }}
  minAvailable: {{ . }}
  {{- end }}
  {{- with $svc.podDisruptionBudget.maxUnavailable }}
  maxUnavailable: {{ . }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "comfyserve.selectorLabels" $labels | nindent 6 }}
{{- end }}
{{- if $v.networkPolicy.enabled }}
---
# Only the ports the service declares are reachable; anything else in the pod
# (the executor's ComfyUI) answers nobody outside it.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "comfyserve.labels" $labels | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "comfyserve.selectorLabels" $labels | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    {{- if $facts.ports.grpc }}
    # gRPC from the release's own pods only.
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: comfyserve
              app.kubernetes.io/instance: {{ $root.Release.Name }}
      ports:
        - {port: grpc, protocol: TCP}
    {{- end }}
    # Health, metrics and (the gateway's) public HTTP from anywhere.
    - ports:
        {{- range $port, $number := $facts.ports }}
        {{- if ne $port "grpc" }}
        - {port: {{ $port }}, protocol: TCP}
        {{- end }}
        {{- end }}
{{- end }}
{{- if $v.metrics.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "comfyserve.labels" $labels | nindent 4 }}
spec:
  selector:
    matchLabels:
      {{- include "comfyserve.selectorLabels" $labels | nindent 6 }}
  endpoints:
    - port: {{ ternary "metrics" "http" (hasKey $facts.ports "metrics") }}
      path: /metrics
      interval: {{ $v.metrics.serviceMonitor.interval }}
{{- end }}
{{- if and $facts.migrate $v.migrations.enabled }}
---
# Before the new version's pods start: its schema, with the same settings.
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $fullname }}-migrate
  labels:
    {{- include "comfyserve.labels" $labels | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ $v.migrations.backoffLimit }}
  activeDeadlineSeconds: {{ $v.migrations.activeDeadlineSeconds }}
  template:
    metadata:
      # Not the service's own labels: its Service and budget must not count it.
      labels:
        {{- include "comfyserve.labels" (dict "root" $root "name" (printf "%s-migrate" .name)) | nindent 8 }}
    spec:
      {{- include "comfyserve.podSpec" (merge (dict "command" "migrate" "restartPolicy" "Never") .) | nindent 6 }}
{{- end }}
{{- end -}}
