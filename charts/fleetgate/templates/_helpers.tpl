{{- define "fleetgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fleetgate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fleetgate.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The pod labels a Deployment selects: a shard's pods carry an instance of their own. */}}
{{- define "fleetgate.podSelectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}{{ with .shard }}-{{ . }}{{ end }}
{{- end -}}

{{- define "fleetgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fleetgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The permissions the controller uses, and nothing more (a test compares them with
the API calls it makes). */}}
{{- define "fleetgate.controllerRules" -}}
- apiGroups: [gitops.fleetgate.dev]
  resources: [gitopsrepositories]
  verbs: [get, list, watch]
# patch and approve: once an approval toward a quorum is recorded in status, the
# controller removes the approve annotation (and its stamps) so the next approver sets
# it afresh; changing the approve annotation needs the approve verb.
- apiGroups: [gitops.fleetgate.dev]
  resources: [syncruns]
  verbs: [get, list, watch, create, delete, patch, approve]
- apiGroups: [gitops.fleetgate.dev]
  resources: [gitopsrepositories/status, syncruns/status, notificationtargets/status]
  verbs: [patch]
# Notifications: the targets, and the record of what was sent (an annotation on the
# SyncRun or repository it is about).
- apiGroups: [gitops.fleetgate.dev]
  resources: [notificationtargets]
  verbs: [get, list, watch]
# Promotion: whether a namespace lets another promote from its repositories (and so lets
# the controller read their runs on the other's behalf).
- apiGroups: [gitops.fleetgate.dev]
  resources: [promotiongrants]
  verbs: [list]
- apiGroups: [gitops.fleetgate.dev]
  resources: [syncruns]
  verbs: [patch]
- apiGroups: [fleet.fleetgate.dev]
  resources: [fleettemplates, fleetnodes, sdwannetworks, sdwanpeers, virtualips]
  verbs: [get, list, watch, create, patch, delete]
# Stored plans are written with server-side apply: a patch, which needs create too
# when it makes the object.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, create, patch, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Finalizers of repositories with deletionPolicy Delete; the webhook receiver also
# requests a sync by annotating the repository.
- apiGroups: [gitops.fleetgate.dev]
  resources: [gitopsrepositories]
  verbs: [patch]
# Health-gated apply reads the providers' registration Leases (fleet-provider-<name>)
# to tell a kind no provider serves from one whose provider has not reported yet.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [list]
# Repositories whose fleet comes from Flux (spec.sourceRef) read the source's artifact
# from its status; the artifact itself is fetched from source-controller over HTTP.
- apiGroups: [source.toolkit.fluxcd.io]
  resources: [gitrepositories, ocirepositories]
  verbs: [get]
{{- end -}}
