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

{{- define "base.clusterScope" -}}
{{- if or (eq .Values.global.resourceScope "all") (eq .Values.global.resourceScope "cluster") }}true{{ end }}
{{- end -}}
{{- define "base.namespaceScope" -}}
{{- if or (eq .Values.global.resourceScope "all") (eq .Values.global.resourceScope "namespace") }}true{{ end }}
{{- end -}}
