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

{{ define "ztunnel.release-name" }}{{ .Values.resourceName | default "ztunnel" }}{{ end }}

{{- define "ztunnel.annotations" -}}
{{- if .Values.revision }}
{{- toYaml (merge (dict "istio.io/rev" .Values.revision) .Values.annotations) }}
{{- else if .Values.annotations }}
{{- toYaml .Values.annotations }}
{{- else }}
{}
{{- end }}
{{- end -}}

{{- define "ztunnel.istiod" -}}istiod{{ if ne .Values.revision "" }}-{{ .Values.revision }}{{ end }}.{{ .Values.istioNamespace }}.svc:15012{{- end -}}
