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

{{/* "-<revision>", or nothing for the revision-less control plane */}}
{{- define "istiod.suffix" -}}
{{- if ne .Values.revision "" }}-{{ .Values.revision }}{{ end -}}
{{- end -}}
{{- define "istiod.name" -}}istiod{{ include "istiod.suffix" . }}{{- end -}}
{{- define "istiod.revLabel" -}}{{ .Values.revision | default "default" }}{{- end -}}
{{- define "istiod.clusterScope" -}}
{{- if or (eq .Values.global.resourceScope "all") (eq .Values.global.resourceScope "cluster") }}true{{ end }}
{{- end -}}
{{- define "istiod.namespaceScope" -}}
{{- if or (eq .Values.global.resourceScope "all") (eq .Values.global.resourceScope "namespace") }}true{{ end }}
{{- end -}}

{{/* Labels of the revision's Pilot objects (deployment.yaml, service.yaml, ... in Istio's chart). */}}
{{- define "istiod.pilotLabels" -}}
istio.io/rev: {{ include "istiod.revLabel" . | quote }}
install.operator.istio.io/owning-resource: {{ .Values.ownerName | default "unknown" }}
operator.istio.io/component: "Pilot"
release: {{ .Release.Name }}
app.kubernetes.io/name: "istiod"
{{ include "istio.labels" . }}
{{- end -}}

{{/* One injection webhook (mutatingwebhook.yaml's "core"); .Prefix is the webhook name's prefix. */}}
{{- define "istiod.injectionWebhook" -}}
- name: {{ .Prefix }}sidecar-injector.istio.io
  clientConfig:
    {{- if .Values.istiodRemote.injectionURL }}
    url: {{ .Values.istiodRemote.injectionURL | quote }}
    {{- else }}
    service:
      name: {{ include "istiod.name" . }}
      namespace: {{ .Release.Namespace }}
      path: {{ .Values.istiodRemote.injectionPath | quote }}
      port: 443
    {{- end }}
    {{- with .Values.istiodRemote.injectionCABundle }}
    caBundle: {{ . | quote }}
    {{- end }}
  sideEffects: None
  rules:
  - operations: [ "CREATE" ]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods"]
  failurePolicy: Fail
  reinvocationPolicy: {{ .Values.sidecarInjectorWebhook.reinvocationPolicy | quote }}
  admissionReviewVersions: ["v1"]
{{- end -}}

{{/* The webhooks selecting istio.io/rev=<.Selector> (namespace and object variants). */}}
{{- define "istiod.revWebhooks" -}}
{{ include "istiod.injectionWebhook" (merge (dict "Prefix" "rev.namespace.") .) }}
  namespaceSelector:
    matchExpressions:
    - key: istio.io/rev
      operator: In
      values:
      - {{ .Selector | quote }}
    - key: istio-injection
      operator: DoesNotExist
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: NotIn
      values:
      - "false"
{{ include "istiod.injectionWebhook" (merge (dict "Prefix" "rev.object.") .) }}
  namespaceSelector:
    matchExpressions:
    - key: istio.io/rev
      operator: DoesNotExist
    - key: istio-injection
      operator: DoesNotExist
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: NotIn
      values:
      - "false"
    - key: istio.io/rev
      operator: In
      values:
      - {{ .Selector | quote }}
{{- end -}}

{{/* The default-revision webhooks: istio-injection=enabled, the object label, and (enableNamespacesByDefault)
     the auto. webhook for namespaces with no label at all. */}}
{{- define "istiod.defaultWebhooks" -}}
{{ include "istiod.injectionWebhook" (merge (dict "Prefix" "namespace.") .) }}
  namespaceSelector:
    matchExpressions:
    - key: istio-injection
      operator: In
      values:
      - enabled
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: NotIn
      values:
      - "false"
{{ include "istiod.injectionWebhook" (merge (dict "Prefix" "object.") .) }}
  namespaceSelector:
    matchExpressions:
    - key: istio-injection
      operator: DoesNotExist
    - key: istio.io/rev
      operator: DoesNotExist
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: In
      values:
      - "true"
    - key: istio.io/rev
      operator: DoesNotExist
{{- if .Values.sidecarInjectorWebhook.enableNamespacesByDefault }}
{{ include "istiod.injectionWebhook" (merge (dict "Prefix" "auto.") .) }}
  namespaceSelector:
    matchExpressions:
    - key: istio-injection
      operator: DoesNotExist
    - key: istio.io/rev
      operator: DoesNotExist
    - key: "kubernetes.io/metadata.name"
      operator: "NotIn"
      values: ["kube-system","kube-public","kube-node-lease","local-path-storage"]
  objectSelector:
    matchExpressions:
    - key: sidecar.istio.io/inject
      operator: DoesNotExist
    - key: istio.io/rev
      operator: DoesNotExist
{{- end }}
{{- end -}}
