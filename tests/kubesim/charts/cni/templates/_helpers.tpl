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

{{- define "name" -}}istio-cni{{- end }}

{{- define "istio-tag" -}}{{ .Values.tag | default .Values.global.tag }}{{- end }}

{{- define "cni.ambient" -}}{{ if or .Values.ambient.enabled (eq .Values.profile "ambient") }}true{{ end }}{{- end -}}

{{/* Labels of the chart's objects (serviceaccount.yaml, configmap-cni.yaml ... in Istio's chart). */}}
{{- define "cni.labels" -}}
app: {{ include "name" . }}
release: {{ .Release.Name }}
istio.io/rev: {{ .Values.revision | default "default" }}
install.operator.istio.io/owning-resource: {{ .Values.ownerName | default "unknown" }}
operator.istio.io/component: "Cni"
app.kubernetes.io/name: {{ include "name" . }}
{{ include "istio.labels" . }}
{{- end -}}
