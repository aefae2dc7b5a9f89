{{/* Labels Istio's charts put on every object (zzz_profile.yaml's "istio.labels"). */}}
{{- define "istio.labels" -}}
{{- if .Release.Service -}}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
{{- end }}
{{- if .Release.Name }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}
app.kubernetes.io/part-of: "istio"
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- if and .Chart.Name .Chart.Version }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end -}}

{{- define "gateway.name" -}}
{{- .Values.name | default .Release.Name | default "istio-ingressgateway" -}}
{{- end }}

{{- define "gateway.selectorLabels" -}}
app: {{ .Values.labels.app | default (include "gateway.name" .) }}
istio: {{ .Values.labels.istio | default (include "gateway.name" . | trimPrefix "istio-") }}
{{- end }}

{{- define "gateway.labels" -}}
{{ include "gateway.selectorLabels" . }}
{{- range $key, $val := .Values.labels }}
{{- if and (ne $key "app") (ne $key "istio") }}
{{ $key | quote }}: {{ $val | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "gateway.name" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{/* labels and annotations of every object of the chart (include with nindent 2 under metadata) */}}
{{- define "gateway.metadata" -}}
labels:
  app.kubernetes.io/name: {{ include "gateway.name" . }}
  {{- include "istio.labels" . | nindent 2 }}
  {{- include "gateway.labels" . | nindent 2 }}
annotations:
  {{- .Values.annotations | toYaml | nindent 2 }}
{{- end }}
