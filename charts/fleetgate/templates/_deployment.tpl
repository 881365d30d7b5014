{{/* One controller Deployment: the main one (shard "") or one shard's. A shard's pods
have an instance label of their own, so that no two Deployments select the same pods. */}}
{{- define "fleetgate.deployment" -}}
{{- $shard := .shard -}}
{{- with .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "fleetgate.fullname" . }}{{ with $shard }}-{{ . }}{{ end }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "fleetgate.labels" . | nindent 4 }}
    {{- with $shard }}
    fleetgate.dev/shard: {{ . }}
    {{- end }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels: {{- include "fleetgate.podSelectorLabels" (dict "root" . "shard" $shard) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "fleetgate.podSelectorLabels" (dict "root" . "shard" $shard) | nindent 8 }}
        {{- with .Values.podLabels }}{{ toYaml . | nindent 8 }}{{ end }}
      {{- with .Values.podAnnotations }}
      annotations: {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "fleetgate.serviceAccountName" . }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets: {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: controller
        image: "{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}"
        imagePullPolicy: {{ .Values.image.pullPolicy }}
        args:
        - controller
        - --http-addr=0.0.0.0:{{ .Values.metrics.port }}
        - --work-dir=/var/cache/fleetgate
        - --apply-concurrency={{ .Values.applyConcurrency }}
        - --max-fleet-objects={{ .Values.maxFleetObjects }}
        - --max-fleet-mib={{ .Values.maxFleetMiB }}
        - --max-concurrent-plannings={{ .Values.planning.maxConcurrent }}
        - --max-concurrent-plannings-per-namespace={{ .Values.planning.maxConcurrentPerNamespace }}
        - --git-max-concurrent={{ .Values.git.maxConcurrent }}
        - --git-max-concurrent-per-namespace={{ .Values.git.maxConcurrentPerNamespace }}
        - --git-max-repository-mib={{ .Values.git.maxRepositoryMiB }}
        - --git-max-file-mib={{ .Values.git.maxFileMiB }}
        - --git-max-cache-mib={{ .Values.gitCache.maxMiB }}
        - --git-connect-timeout={{ .Values.git.connectTimeout }}
        - --git-io-timeout={{ .Values.git.ioTimeout }}
        - --log-format={{ .Values.logFormat }}
        {{- range .Values.watchNamespaces }}
        - --namespace={{ . }}
        {{- end }}
        {{- if .Values.receiver.enabled }}
        - --receiver-addr=0.0.0.0:{{ .Values.receiver.port }}
        {{- end }}
        {{- if .Values.sources.allowHttp }}
        - --allow-http-urls
        {{- end }}
        {{- if .Values.sources.allowGit }}
        - --allow-git-urls
        {{- end }}
        {{- if .Values.sources.allowFile }}
        - --allow-file-urls
        {{- end }}
        {{- if .Values.approval.allowUnverified }}
        - --allow-unverified-approvals
        {{- end }}
        - --approval-history={{ .Values.approval.history }}
        {{- if $shard }}
        - --watch-label-selector={{ .Values.sharding.key }}={{ $shard }}
        - --lease-name={{ include "fleetgate.fullname" . }}-{{ $shard }}
        {{- else if .Values.sharding.shards }}
        - --watch-label-selector=!{{ .Values.sharding.key }}
        {{- end }}
        {{- with .Values.sources.allowedHosts }}
        - --allowed-git-hosts={{ join "," . }}
        {{- end }}
        {{- with .Values.outbound.allowedNotificationHosts }}
        - --allowed-notification-hosts={{ join "," . }}
        {{- end }}
        {{- if .Values.outbound.refusePrivateAddresses }}
        - --refuse-private-addresses
        {{- end }}
        - --cluster-name={{ .Values.clusterName }}
        {{- with .Values.attestation.keySecret }}
        - --attestation-key-secret={{ . }}
        {{- end }}
        {{- with .Values.moduleCatalogs.selector }}
        - --module-catalog-selector={{ . }}
        {{- end }}
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        ports:
        - name: http-metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
        {{- if .Values.receiver.enabled }}
        - name: http-webhook
          containerPort: {{ .Values.receiver.port }}
          protocol: TCP
        {{- end }}
        livenessProbe:
          httpGet: {path: /healthz, port: http-metrics}
          periodSeconds: 20
        readinessProbe:
          httpGet: {path: /readyz, port: http-metrics}
          periodSeconds: 10
        resources: {{- toYaml .Values.resources | nindent 10 }}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - name: git-cache
          mountPath: /var/cache/fleetgate
        - name: tmp
          mountPath: /tmp
      volumes:
      - name: git-cache
        emptyDir:
          sizeLimit: {{ .Values.gitCache.sizeLimit }}
      - name: tmp
        emptyDir:
          sizeLimit: {{ .Values.tmpSizeLimit }}
      {{- with .Values.nodeSelector }}
      nodeSelector: {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations: {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if .Values.affinity }}
      affinity: {{- toYaml .Values.affinity | nindent 8 }}
      {{- else if eq .Values.podAntiAffinity "preferred" }}
      # The replicas on different nodes, so that losing one node does not take both.
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector:
                matchLabels: {{- include "fleetgate.podSelectorLabels" (dict "root" . "shard" $shard) | nindent 18 }}
      {{- else if eq .Values.podAntiAffinity "required" }}
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels: {{- include "fleetgate.podSelectorLabels" (dict "root" . "shard" $shard) | nindent 14 }}
      {{- end }}
{{- end }}
{{- end -}}
