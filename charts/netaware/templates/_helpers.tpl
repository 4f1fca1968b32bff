{{/* The image of the shared netaware image or the probe's, at the chart's tag unless one is set. */}}
{{- define "netaware.image" -}}
{{ .repository }}:{{ .tag }}
{{- end }}

{{- define "netaware.tag" -}}
{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* netaware's namespaces: fixed, since the static manifests under files/ (shared with kustomize) name them. */}}
{{- define "netaware.namespace" -}}
netaware
{{- end }}

{{- define "netaware.probeNamespace" -}}
netaware-probe
{{- end }}

{{/* Labels every templated object carries (the static manifests under files/ keep their own). */}}
{{- define "netaware.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: netaware
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ .root.Chart.Name }}-{{ .root.Chart.Version }}
{{- end }}

{{/* The hardening every non-root container gets. */}}
{{- define "netaware.restricted" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* The annotations a plain Prometheus scrapes by (monitoring/prometheus.yaml); the argument is the metrics port. */}}
{{- define "netaware.scrape" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ . | quote }}
prometheus.io/path: /metrics
{{- end }}
