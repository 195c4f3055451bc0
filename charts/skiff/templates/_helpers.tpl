{{/*
Helpers shared by every template. Namespaced objects are named
skiff-<component>: one site per namespace. Cluster-scoped objects add the
release namespace (skiff-<component>-<namespace>) so that two sites can live
in one cluster.
*/}}

{{/* skiff.siteName: the site's name, site.name or else the release namespace. */}}
{{- define "skiff.siteName" -}}
{{ .Values.site.name | default .Release.Namespace }}
{{- end }}

{{/* skiff.clusterName: the name of a cluster-scoped object of a component. */}}
{{- define "skiff.clusterName" -}}
skiff-{{ .component }}-{{ .root.Release.Namespace }}
{{- end }}

{{/* skiff.labels: the labels of every object of a component. */}}
{{- define "skiff.labels" -}}
{{ include "skiff.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: skiff
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{/* skiff.selectorLabels: the labels a component's Deployment or DaemonSet selects its pods by. */}}
{{- define "skiff.selectorLabels" -}}
app.kubernetes.io/name: skiff
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* skiff.image: the image of a component (controller, injector, router, node-agent). */}}
{{- define "skiff.image" -}}
{{ .root.Values.images.registry }}/skiff-{{ .image }}:{{ .root.Values.images.tag | default .root.Chart.AppVersion }}
{{- end }}

{{/* skiff.controllerAddress: where sidecars, gateways and node agents reach the controller's xDS server. */}}
{{- define "skiff.controllerAddress" -}}
skiff-controller.{{ .Release.Namespace }}.svc:15010
{{- end }}

{{/*
skiff.podSecurityContext: the pod security context of the components that
run as an unprivileged user (all but the node agent).
*/}}
{{- define "skiff.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* skiff.containerSecurityContext: the container security context of the unprivileged components. */}}
{{- define "skiff.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/* skiff.podEnv: POD_NAMESPACE and POD_NAME from the downward API. */}}
{{- define "skiff.podEnv" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}

{{/* skiff.probes: liveness and readiness on the health port, named health. */}}
{{- define "skiff.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  initialDelaySeconds: 5
  periodSeconds: 10
  failureThreshold: 3
# Probed every 2 s: a pod that replaces another (a rolling upgrade, a
# deleted gateway) takes traffic within 2 s of being ready.
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  periodSeconds: 2
  failureThreshold: 3
{{- end }}

{{/* skiff.commonPorts: the health and metrics container ports every component has. */}}
{{- define "skiff.commonPorts" -}}
- name: health
  containerPort: 15021
  protocol: TCP
- name: metrics
  containerPort: 15090
  protocol: TCP
{{- end }}
