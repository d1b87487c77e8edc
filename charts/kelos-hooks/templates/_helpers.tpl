{{/* Chart name. */}}
{{- define "kelos-hooks.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every object; release-unique, so cluster-scoped objects never clash. */}}
{{- define "kelos-hooks.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kelos-hooks.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every object. */}}
{{- define "kelos-hooks.labels" -}}
helm.sh/chart: {{ include "kelos-hooks.chart" . }}
{{ include "kelos-hooks.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kelos-hooks
{{- end }}

{{- define "kelos-hooks.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kelos-hooks.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: (dict "root" $ "component" "admission"). */}}
{{- define "kelos-hooks.componentLabels" -}}
{{ include "kelos-hooks.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kelos-hooks.componentSelectorLabels" -}}
{{ include "kelos-hooks.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "kelos-hooks.admission.fullname" -}}
{{ include "kelos-hooks.fullname" . }}-admission
{{- end }}

{{- define "kelos-hooks.dispatcher.fullname" -}}
{{ include "kelos-hooks.fullname" . }}-dispatcher
{{- end }}

{{/* Name of both webhook configurations (cluster-scoped). */}}
{{- define "kelos-hooks.webhookConfigName" -}}
{{ include "kelos-hooks.fullname" . }}
{{- end }}

{{- define "kelos-hooks.admission.serviceAccountName" -}}
{{- if .Values.admission.serviceAccount.create }}
{{- default (include "kelos-hooks.admission.fullname" .) .Values.admission.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.admission.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kelos-hooks.dispatcher.serviceAccountName" -}}
{{- if .Values.dispatcher.serviceAccount.create }}
{{- default (include "kelos-hooks.dispatcher.fullname" .) .Values.dispatcher.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.dispatcher.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The identity the admission server lets change kelos.dev/webhook-* annotations. */}}
{{- define "kelos-hooks.dispatcherIdentity" -}}
{{- default (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "kelos-hooks.dispatcher.serviceAccountName" .)) .Values.admission.dispatcherIdentity }}
{{- end }}

{{/* Secret holding the admission server's serving certificate (both modes). */}}
{{- define "kelos-hooks.tlsSecretName" -}}
{{- if and (eq .Values.certificates.mode "self-managed") .Values.certificates.selfManaged.secretName }}
{{- .Values.certificates.selfManaged.secretName }}
{{- else }}
{{- include "kelos-hooks.admission.fullname" . }}-tls
{{- end }}
{{- end }}

{{- define "kelos-hooks.leaseName" -}}
{{- default (include "kelos-hooks.dispatcher.fullname" .) .Values.dispatcher.leaseName }}
{{- end }}

{{/* Image reference: (dict "root" $ "image" .Values.admission.image). */}}
{{- define "kelos-hooks.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* Pod affinity: the user's, or node anti-affinity between replicas of one component:
     (dict "root" $ "component" "admission" "values" .Values.admission). */}}
{{- define "kelos-hooks.affinity" -}}
{{- if .values.affinity }}
affinity:
  {{- toYaml .values.affinity | nindent 2 }}
{{- else if eq .values.podAntiAffinity "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "kelos-hooks.componentSelectorLabels" . | nindent 14 }}
{{- else if eq .values.podAntiAffinity "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "kelos-hooks.componentSelectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}

{{/* Scheduling fields shared by both Deployments: (dict "root" $ "component" … "values" …). */}}
{{- define "kelos-hooks.scheduling" -}}
{{- include "kelos-hooks.affinity" . }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Namespace selector of every webhook: excluded namespaces plus the user's extra terms. */}}
{{- define "kelos-hooks.webhookNamespaceSelector" -}}
{{- $excluded := concat (list .Release.Namespace) .Values.webhooks.excludeNamespaces | uniq }}
{{- $extra := .Values.webhooks.namespaceSelector | default dict }}
{{- with $extra.matchLabels }}
matchLabels:
  {{- toYaml . | nindent 2 }}
{{- end }}
matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values:
      {{- toYaml $excluded | nindent 6 }}
  {{- with $extra.matchExpressions }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* clientConfig of one webhook: (dict "root" $ "path" "/mutate/tasks"). The chart's Service, or
webhooks.url for an admission server outside the cluster (with webhooks.caBundle). */}}
{{- define "kelos-hooks.webhookClientConfig" -}}
{{- $w := .root.Values.webhooks }}
{{- if $w.url }}
url: {{ printf "%s%s" (trimSuffix "/" $w.url) .path | quote }}
{{- with $w.caBundle }}
caBundle: {{ . }}
{{- end }}
{{- else }}
service:
  name: {{ include "kelos-hooks.admission.fullname" .root }}
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path }}
  port: {{ .root.Values.admission.service.port }}
{{- end }}
{{- end }}

{{/* Reject values combinations that would leave the webhooks without a working certificate. */}}
{{- define "kelos-hooks.validate" -}}
{{- $mode := .Values.certificates.mode }}
{{- if not (has $mode (list "self-managed" "cert-manager")) }}
{{- fail (printf "certificates.mode must be self-managed or cert-manager, not %q" $mode) }}
{{- end }}
{{- if and (eq $mode "cert-manager") .Values.certificates.selfManaged.secretName }}
{{- fail "certificates.selfManaged.secretName applies to certificates.mode=self-managed only" }}
{{- end }}
{{- end }}
