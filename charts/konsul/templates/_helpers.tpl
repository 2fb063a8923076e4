{{/* Chart name, overridable. */}}
{{- define "konsul.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "<release>-konsul", or the release name alone when it already contains the chart name. */}}
{{- define "konsul.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of the operator's objects (Deployment, Service, Role...). */}}
{{- define "konsul.operatorName" -}}
{{- printf "%s-operator" (include "konsul.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of the optional KonsulCluster. */}}
{{- define "konsul.clusterName" -}}
{{- default (include "konsul.fullname" .) .Values.cluster.name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "konsul.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object of the release carries (with a name and instance from the callers). */}}
{{- define "konsul.commonLabels" -}}
helm.sh/chart: {{ include "konsul.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: konsul
{{- end -}}

{{/* The operator's selector. Its name differs from the nodes' app.kubernetes.io/name=konsul so
     the cluster's Services can never select the operator pod, whatever the release is called. */}}
{{- define "konsul.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "konsul.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "konsul.operatorLabels" -}}
{{ include "konsul.commonLabels" . }}
{{ include "konsul.operatorSelectorLabels" . }}
{{- end -}}

{{- define "konsul.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "konsul.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "konsul.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Namespaces a namespaced operator watches. */}}
{{- define "konsul.watchNamespaces" -}}
{{- if .Values.rbac.watchNamespaces -}}
{{- toJson .Values.rbac.watchNamespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* Whether the Prometheus Operator API is served (the gate of every monitoring object). */}}
{{- define "konsul.monitoringServed" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{/* What the operator does, in either scope (kept in one place so Role and ClusterRole agree). */}}
{{- define "konsul.operatorRules" -}}
- apiGroups: [konsul.io]
  resources: [konsulclusters]
  verbs: [get, list, watch, patch, update]
- apiGroups: [konsul.io]
  resources: [konsulclusters/status]
  verbs: [get, patch, update]
- apiGroups: [konsul.io]
  resources: [konsulclusters/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, delete]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, watch, create, delete]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
# The clusters' CA, member certificates and tokens (Secrets it owns).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, patch, update, delete]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors, prometheusrules]
  verbs: [get, list, watch, create, patch, update, delete]
{{- end -}}

{{/* Labels of the KonsulCluster and the test pod; component given by the caller. */}}
{{- define "konsul.labels" -}}
{{ include "konsul.commonLabels" . }}
app.kubernetes.io/name: {{ include "konsul.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
