{{/*
The one pod template of the chart: Deployments, the node agent DaemonSet and the hook Jobs
all render it.

(dict
  "root" $  "name" <key of services>  "component" server|migrate|provision-topics
  "module" <python module: python -m module>   "args" <list>
  "serve" <true: ports, probes, ConfigMap, ServiceAccount; false: a one-shot Job>
  optional: "podName" (labels and container name; default name), "env" (replaces the service's environment),
  "resources" (replaces the service's resources))
*/}}
{{- define "gpucloud.podTemplate" -}}
{{- $root := .root -}}
{{- $svc := include "gpucloud.settings" (list $root .name) | fromYaml -}}
{{- $podName := .podName | default .name -}}
{{- $labels := dict "root" $root "name" $podName "component" .component -}}
{{- $signingKeys := dig "signingKeys" "secretName" "" $svc -}}
{{- $signingKeysDir := include "gpucloud.signingKeysDir" . -}}
{{- $port := include "gpucloud.httpPort" $root | int -}}
{{- /* serving pods that talk to Kafka, and the provision Job, trust the brokers' CA */}}
{{- $kafkaCa := and (include "gpucloud.kafkaCa" $root) (or (and .serve $svc.kafka) (eq .component "provision-topics")) -}}
metadata:
  labels:
    {{- include "gpucloud.labels" $labels | nindent 4 }}
  {{- if .serve }}
  annotations:
    checksum/config: {{ include "gpucloud.config" (list $root .name) | sha256sum }}
    {{- if $root.Values.metrics.secretName }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ $port | quote }}
    prometheus.io/path: /metrics
    {{- end }}
  {{- end }}
spec:
  {{- if .serve }}
  serviceAccountName: {{ include "gpucloud.name" (list $root .name) }}
  {{- else }}
  restartPolicy: Never
  {{- end }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ $svc.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml $svc.podSecurityContext | nindent 4 }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $svc.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- if and .serve $svc.nodeSelector }}
  nodeSelector:
    {{- toYaml $svc.nodeSelector | nindent 4 }}
  {{- end }}
  {{- if and .serve $svc.tolerations }}
  tolerations:
    {{- toYaml $svc.tolerations | nindent 4 }}
  {{- end }}
  {{- if and .serve (ne $svc.podAntiAffinity.type "none") }}
  {{- $term := dict "topologyKey" $svc.podAntiAffinity.topologyKey "labelSelector" (dict "matchLabels" (include "gpucloud.selectorLabels" $labels | fromYaml)) }}
  affinity:
    podAntiAffinity:
      {{- if eq $svc.podAntiAffinity.type "required" }}
      requiredDuringSchedulingIgnoredDuringExecution:
        - {{- toYaml $term | nindent 10 }}
      {{- else }}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            {{- toYaml $term | nindent 12 }}
      {{- end }}
  {{- end }}
  containers:
    - name: {{ $podName }}
      image: {{ include "gpucloud.image" (list $root .name) }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command: ["python", "-m", {{ .module | quote }}]
      {{- with .args }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if .serve }}
      envFrom:
        - configMapRef:
            name: {{ include "gpucloud.name" (list $root .name) }}
      {{- end }}
      {{- with include "gpucloud.env" . | trim }}
      env:
        {{- . | nindent 8 }}
      {{- end }}
      {{- if .serve }}
      ports:
        - name: http
          containerPort: {{ $port }}
          protocol: TCP
        {{- with $svc.ssh }}
        - name: ssh
          containerPort: {{ .port }}
          protocol: TCP
        {{- end }}
      {{- with $svc.probes }}
      startupProbe:
        httpGet: {path: /healthz, port: http}
        periodSeconds: 5
        timeoutSeconds: {{ .timeoutSeconds }}
        failureThreshold: {{ .startupFailureThreshold }}
      livenessProbe:
        httpGet: {path: /healthz, port: http}
        initialDelaySeconds: {{ .initialDelaySeconds }}
        periodSeconds: {{ .periodSeconds }}
        timeoutSeconds: {{ .timeoutSeconds }}
        failureThreshold: {{ .failureThreshold }}
      readinessProbe:
        httpGet: {path: /readyz, port: http}
        initialDelaySeconds: {{ .initialDelaySeconds }}
        periodSeconds: {{ .periodSeconds }}
        timeoutSeconds: {{ .timeoutSeconds }}
        failureThreshold: {{ .failureThreshold }}
      {{- end }}
      {{- end }}
      resources:
        {{- toYaml (.resources | default $svc.resources) | nindent 8 }}
      securityContext:
        {{- toYaml $svc.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if eq $svc.role "node-agent" }}
        - name: bundle-cache
          mountPath: /var/cache/gpucloud
        {{- end }}
        {{- if and .serve $signingKeys }}
        - name: signing-keys
          mountPath: {{ $signingKeysDir }}
          readOnly: true
        {{- end }}
        {{- if $kafkaCa }}
        - name: kafka-ca
          mountPath: {{ include "gpucloud.kafkaCaDir" $root }}
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir: {sizeLimit: 64Mi}
    {{- if eq $svc.role "node-agent" }}
    # the agent's pull cache: one OCI layout per bundle digest, verified before each run
    - name: bundle-cache
      emptyDir: {sizeLimit: {{ $svc.bundleCacheSize | default "50Gi" }}}
    {{- end }}
    {{- if and .serve $signingKeys }}
    - name: signing-keys
      secret:
        secretName: {{ $signingKeys }}
    {{- end }}
    {{- if $kafkaCa }}
    - name: kafka-ca
      secret:
        secretName: {{ $root.Values.kafka.ca.secretName }}
    {{- end }}
{{- end }}

{{/*
The container's environment as a YAML list: .env when given; else the plain settings inline
(hook Jobs only: serving pods read them from the ConfigMap), then the Secret references and
the downward API.
*/}}
{{- define "gpucloud.env" -}}
{{- $root := .root -}}
{{- $svc := include "gpucloud.settings" (list $root .name) | fromYaml -}}
{{- if .env -}}
{{- toYaml .env -}}
{{- else -}}
{{- if not .serve }}
{{- range $key, $value := include "gpucloud.config" (list $root .name true) | fromYaml }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- with $svc.database }}
{{- if eq $.component "migrate" }}
{{- /* the migration Job alone: the owner's login and the role it grants to */}}
- name: GPUCLOUD_DATABASE_OWNER_URL
  valueFrom:
    secretKeyRef:
      name: {{ .ownerSecretName | default .secretName }}
      key: {{ .ownerSecretKey }}
- name: GPUCLOUD_DATABASE_RUNTIME_ROLE
  value: {{ .runtimeRole | quote }}
{{- else }}
- name: GPUCLOUD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretKey }}
{{- end }}
{{- end }}
{{- if and .serve $svc.kafka }}
{{- include "gpucloud.kafkaPassword" (dict "root" $root "secretName" (dig "kafkaCredentials" "secretName" "" $svc) "secretKey" (dig "kafkaCredentials" "secretKey" "password" $svc)) }}
{{- end }}
{{- if .serve }}
{{- range $key, $ref := $svc.secretEnv }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secretName }}
      key: {{ $ref.secretKey }}
{{- end }}
{{- end }}
{{- with $root.Values.operatorToken.secretName }}
- name: GPUCLOUD_OPERATOR_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $root.Values.operatorToken.secretKey }}
{{- end }}
{{- with $root.Values.metrics.secretName }}
- name: GPUCLOUD_METRICS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $root.Values.metrics.secretKey }}
{{- end }}
{{- with dig "sessionKeys" "secretName" "" $svc }}
- name: GPUCLOUD_PORTAL_SESSION_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ dig "sessionKeys" "secretKey" "keys" $svc }}
{{- end }}
{{- if .serve }}
{{- with $svc.payments }}
- name: GPUCLOUD_BILLING_PAYMENT_PROVIDER
  value: {{ .provider | quote }}
{{- if eq .provider "stripe" }}
- name: GPUCLOUD_BILLING_STRIPE_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .stripe.secretName }}
      key: {{ .stripe.apiKeySecretKey }}
- name: GPUCLOUD_BILLING_STRIPE_WEBHOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .stripe.secretName }}
      key: {{ .stripe.webhookSecretKey }}
{{- else }}
- name: GPUCLOUD_BILLING_SANDBOX_PAYMENTS
  value: "true"
{{- end }}
{{- end }}
{{- end }}
{{- if eq $svc.role "node-agent" }}
- name: GPUCLOUD_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end }}
{{- if and .serve (dig "signingKeys" "secretName" "" $svc) }}
- name: GPUCLOUD_SIGNING_KEYS_DIR
  value: {{ include "gpucloud.signingKeysDir" . }}
{{- end }}
{{- end -}}
{{- end }}

{{- define "gpucloud.signingKeysDir" -}}/var/run/secrets/gpucloud/signing-keys{{- end }}
