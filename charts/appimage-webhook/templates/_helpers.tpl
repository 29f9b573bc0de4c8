{{/*
Chart name, truncated to 63 characters (the limit of a label value).
*/}}
{{- define "appimage-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name used as the prefix of every resource: the release name, plus the chart name unless
the release name already contains it. Truncated to 63 characters.
*/}}
{{- define "appimage-webhook.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value: name-version.
*/}}
{{- define "appimage-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource but the two Deployments (which name their own component).
*/}}
{{- define "appimage-webhook.labels" -}}
{{ include "appimage-webhook.commonLabels" . }}
app.kubernetes.io/component: admission-webhook
{{- end }}

{{/*
Labels of every resource, without the component.
*/}}
{{- define "appimage-webhook.commonLabels" -}}
helm.sh/chart: {{ include "appimage-webhook.chart" . }}
{{ include "appimage-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kuscia-appimage
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels of the webhook Pods (Deployment, Service, PodDisruptionBudget, anti-affinity).
*/}}
{{- define "appimage-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "appimage-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of the admission Pods (the admission Deployment, the Service, the
PodDisruptionBudget, the NetworkPolicy): the controllers' Pods never receive admission requests.
*/}}
{{- define "appimage-webhook.admissionSelectorLabels" -}}
{{ include "appimage-webhook.selectorLabels" . }}
app.kubernetes.io/component: admission-webhook
{{- end }}

{{/*
Selector labels of the controllers' Pods (`--reconcile=true`, leader-elected).
*/}}
{{- define "appimage-webhook.controllersSelectorLabels" -}}
{{ include "appimage-webhook.selectorLabels" . }}
app.kubernetes.io/component: controllers
{{- end }}

{{/*
Name of the admission ServiceAccount: reads AppImages and their revisions, writes Events only.
*/}}
{{- define "appimage-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "appimage-webhook.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the controllers' ServiceAccount: writes only what the controllers own (RBAC in
rbac.yaml, confined further by the ValidatingAdmissionPolicy in admission-policies.yaml).
*/}}
{{- define "appimage-webhook.controllersServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-controllers" (include "appimage-webhook.fullname" .)) .Values.controllers.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.controllers.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the serving certificate (tls.crt, tls.key, ca.crt), written by the
chart or by cert-manager.
*/}}
{{- define "appimage-webhook.tlsSecretName" -}}
{{- printf "%s-tls" (include "appimage-webhook.fullname" .) }}
{{- end }}

{{/*
Name of the Secret holding the trusted signing public keys.
*/}}
{{- define "appimage-webhook.trustedKeysSecretName" -}}
{{- default (printf "%s-trusted-keys" (include "appimage-webhook.fullname" .)) .Values.trustedKeys.secretName }}
{{- end }}

{{/*
Name of the Secret holding the key that seals injected Pods.
*/}}
{{- define "appimage-webhook.sealKeySecretName" -}}
{{- default (printf "%s-seal-key" (include "appimage-webhook.fullname" .)) .Values.sealKey.secretName }}
{{- end }}

{{/*
DNS names of the webhook Service: the serving certificate's subject alternative names.
*/}}
{{- define "appimage-webhook.dnsNames" -}}
{{- $svc := include "appimage-webhook.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/*
Name of cert-manager's serving Certificate, as `<namespace>/<name>` for the CA injector.
*/}}
{{- define "appimage-webhook.certManagerInjectFrom" -}}
{{- printf "%s/%s-serving" .Release.Namespace (include "appimage-webhook.fullname" .) }}
{{- end }}

{{/*
Container image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "appimage-webhook.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
