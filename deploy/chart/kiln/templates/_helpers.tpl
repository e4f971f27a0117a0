{{/* The release's name: fullnameOverride (pro-builder by default) or the release name. */}}
{{- define "kiln.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kiln.labels" -}}
app: {{ include "kiln.fullname" . }}
app.kubernetes.io/name: kiln
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kiln.selector" -}}
app: {{ include "kiln.fullname" . }}
{{- end -}}
