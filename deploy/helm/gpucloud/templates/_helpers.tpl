{{/*
Names, labels and the per-deployable settings. Every template ranges over .Values.services
and calls these; the pod itself is built once, in _pod.tpl.
*/}}

{{/* The HTTP port of every container (the runtime contract: GPUCLOUD_HTTP_PORT). */}}
{{- define "gpucloud.httpPort" -}}8000{{- end }}

{{/* Prefix of every resource name: the release name, or <release>-gpucloud. */}}
{{- define "gpucloud.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/* (list $ name) -> <fullname>-<name>: the name of every resource of one deployable. */}}
{{- define "gpucloud.name" -}}
{{- printf "%s-%s" (include "gpucloud.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* (dict "root" $ "name" name "component" component) */}}
{{- define "gpucloud.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "gpucloud.labels" -}}
{{ include "gpucloud.selectorLabels" . }}
app.kubernetes.io/part-of: gpucloud
app.kubernetes.io/version: {{ .root.Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{/* (list $ name) -> name and labels of a deployable's long-running resources. */}}
{{- define "gpucloud.metadata" -}}
name: {{ include "gpucloud.name" . }}
labels:
  {{- include "gpucloud.labels" (dict "root" (index . 0) "name" (index . 1) "component" "server") | nindent 2 }}
{{- end }}

{{/* (list $ name) -> the labels that select a deployable's serving pods. */}}
{{- define "gpucloud.serverSelector" -}}
{{- include "gpucloud.selectorLabels" (dict "root" (index . 0) "name" (index . 1) "component" "server") -}}
{{- end }}

{{/*
(list base override) -> YAML of override deep-merged over base. Unlike sprig's
mergeOverwrite, an explicit false, 0 or empty value in override wins.
*/}}
{{- define "gpucloud.deepMerge" -}}
{{- $out := deepCopy (index . 0) -}}
{{- range $key, $value := index . 1 -}}
{{- if and (kindIs "map" $value) (kindIs "map" (get $out $key)) -}}
{{- $_ := set $out $key (include "gpucloud.deepMerge" (list (get $out $key) $value) | fromYaml) -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{/* (list $ name) -> YAML of services.<name> merged over defaults. */}}
{{- define "gpucloud.settings" -}}
{{- $root := index . 0 -}}
{{- include "gpucloud.deepMerge" (list $root.Values.defaults (index $root.Values.services (index . 1))) -}}
{{- end }}

{{/* (list $ name) -> YAML list of the deployables <name> calls over HTTP. */}}
{{- define "gpucloud.callees" -}}
{{- $root := index . 0 -}}
{{- $self := index $root.Values.services (index . 1) -}}
{{- $callees := $self.calls | default list -}}
{{- if eq $self.role "gateway" -}}
{{- range $name, $entry := $root.Values.services -}}
{{- if eq $entry.role "service" -}}{{- $callees = append $callees $name -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (uniq $callees) -}}
{{- end }}

{{/* (list $ name) -> YAML list of the deployables that call <name> over HTTP. */}}
{{- define "gpucloud.callers" -}}
{{- $root := index . 0 -}}
{{- $callers := list -}}
{{- range $name, $_ := $root.Values.services -}}
{{- if has (index $ 1) (include "gpucloud.callees" (list $root $name) | fromYamlArray) -}}
{{- $callers = append $callers $name -}}
{{- end -}}
{{- end -}}
{{- toYaml $callers -}}
{{- end }}

{{/* (list $ name) -> the image reference of one deployable. */}}
{{- define "gpucloud.image" -}}
{{- $root := index . 0 -}}
{{- $own := (index $root.Values.services (index . 1)).image | default dict -}}
{{- $repository := $own.repository | default (printf "%s/gpucloud-%s" $root.Values.image.registry (index . 1)) -}}
{{- printf "%s:%s" $repository ($own.tag | default $root.Values.image.tag) -}}
{{- end }}

{{/*
(list $ name [job]) -> the plain (non-secret) environment of one deployable, as a YAML map.
The ConfigMap holds it for the long-running pods; the hook Jobs, which run before the
ConfigMap exists, get it inline (with `job` true: without the Kafka principal, which a
migration never uses).
*/}}
{{- define "gpucloud.config" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $svc := include "gpucloud.settings" . | fromYaml -}}
GPUCLOUD_SERVICE_NAME: {{ $name | quote }}
GPUCLOUD_ENVIRONMENT: {{ $root.Values.environment | quote }}
GPUCLOUD_KAFKA_BOOTSTRAP: {{ $root.Values.kafka.bootstrapServers | quote }}
{{- $job := and (gt (len .) 2) (index . 2) }}
{{- if and $svc.kafka (not $job) }}
{{- include "gpucloud.kafkaConfig" (list $root $name) }}
{{- end }}
GPUCLOUD_HTTP_HOST: "0.0.0.0"
GPUCLOUD_HTTP_PORT: {{ include "gpucloud.httpPort" $root | quote }}
GPUCLOUD_GIT_SHA: {{ $root.Values.gitSha | quote }}
GPUCLOUD_LOG_FORMAT: "json"
GPUCLOUD_LOG_LEVEL: {{ $svc.logLevel | quote }}
{{- if and $svc.database $root.Values.migrations.enabled }}
{{- /* the pre-install/pre-upgrade Job has migrated: pods do not race to do it again */}}
GPUCLOUD_MIGRATE_ON_START: "false"
{{- end }}
{{- if eq $svc.role "service" }}
{{- /* iam's access tokens: who issues them, whom this service is, where iam's keys are */}}
GPUCLOUD_TOKEN_ISSUER: {{ $root.Values.tokens.issuer | quote }}
GPUCLOUD_TOKEN_AUDIENCE: {{ $svc.tokenAudience | default $root.Values.tokens.audience | quote }}
{{- if eq $name "iam" }}
{{- $audiences := list }}
{{- range $other, $_ := $root.Values.services }}
{{- $audiences = append $audiences ((include "gpucloud.settings" (list $root $other) | fromYaml).tokenAudience | default $root.Values.tokens.audience) }}
{{- end }}
GPUCLOUD_IAM_TOKEN_AUDIENCES: {{ uniq $audiences | sortAlpha | join "," | quote }}
{{- else }}
GPUCLOUD_JWKS_URL: {{ $root.Values.tokens.jwksUrl | default (printf "http://%s:%s/v1/iam/.well-known/jwks.json" (include "gpucloud.name" (list $root "iam")) (include "gpucloud.httpPort" $root)) | quote }}
{{- end }}
{{- end }}
{{- if eq $svc.role "gateway" }}
{{- $upstreams := list }}
{{- range $upstream, $entry := $root.Values.services }}
{{- if eq $entry.role "service" }}
{{- $upstreams = append $upstreams (printf "%s=http://%s:%s" $entry.route (include "gpucloud.name" (list $root $upstream)) (include "gpucloud.httpPort" $root)) }}
{{- end }}
{{- end }}
GPUCLOUD_UPSTREAMS: {{ join "," $upstreams | quote }}
{{- end }}
{{- range $callee := $svc.calls }}
{{- if ne (index $root.Values.services $callee).role "node-agent" }}
GPUCLOUD_{{ $callee | upper | replace "-" "_" }}_URL: {{ printf "http://%s:%s" (include "gpucloud.name" (list $root $callee)) (include "gpucloud.httpPort" $root) | quote }}
{{- end }}
{{- end }}
{{- with $svc.ssh }}
GPUCLOUD_TERMINAL_SSH_PORT: {{ .port | quote }}
GPUCLOUD_TERMINAL_SSH_HOST: "0.0.0.0"
{{- end }}
{{- range $key, $value := $svc.env }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
(list $ username) -> the plain Kafka settings of a client authenticating as `username`
(platformkit.kafka.KafkaSettings): protocol, SASL mechanism and username, the CA file. The
password is a Secret reference (gpucloud.kafkaPassword).
*/}}
{{- define "gpucloud.kafkaConfig" -}}
{{- $kafka := (index . 0).Values.kafka }}
GPUCLOUD_KAFKA_SECURITY_PROTOCOL: {{ $kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL_" $kafka.securityProtocol }}
GPUCLOUD_KAFKA_SASL_MECHANISM: {{ $kafka.saslMechanism | quote }}
GPUCLOUD_KAFKA_SASL_USERNAME: {{ index . 1 | quote }}
{{- end }}
{{- if and (hasSuffix "SSL" $kafka.securityProtocol) $kafka.ca.secretName }}
GPUCLOUD_KAFKA_SSL_CAFILE: {{ printf "%s/%s" (include "gpucloud.kafkaCaDir" .) $kafka.ca.secretKey | quote }}
{{- end }}
{{- end }}

{{/* (dict "root" $ "secretName" .. "secretKey" ..) -> the env entry of a principal's password. */}}
{{- define "gpucloud.kafkaPassword" -}}
{{- if hasPrefix "SASL_" .root.Values.kafka.securityProtocol }}
- name: GPUCLOUD_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .secretKey }}
{{- end }}
{{- end }}

{{/* $ -> whether pods mount the brokers' CA bundle. */}}
{{- define "gpucloud.kafkaCa" -}}
{{- if and (hasSuffix "SSL" .Values.kafka.securityProtocol) .Values.kafka.ca.secretName }}true{{ end -}}
{{- end }}

{{- define "gpucloud.kafkaCaDir" -}}/var/run/secrets/gpucloud/kafka-ca{{- end }}

{{/* Consistency checks JSON schema cannot express; a failed one stops lint/template. */}}
{{- define "gpucloud.validate" -}}
{{- $gateways := list -}}
{{- $tags := dict "image.tag" .Values.image.tag -}}
{{- range $name, $entry := .Values.services -}}
{{- $svc := include "gpucloud.settings" (list $ $name) | fromYaml -}}
{{- if eq $svc.role "gateway" }}{{ $gateways = append $gateways $name }}{{ end -}}
{{- with dig "image" "tag" "" $svc }}{{ $_ := set $tags (printf "services.%s.image.tag" $name) . }}{{ end -}}
{{- if and (eq $svc.role "service") (not $svc.route) -}}
{{- fail (printf "services.%s: a service needs a route (the gateway forwards /v1/<route>/ to it)" $name) -}}
{{- end -}}
{{- range $svc.calls -}}
{{- if not (hasKey $.Values.services .) -}}
{{- fail (printf "services.%s.calls: %q is not a key of services" $name .) -}}
{{- end -}}
{{- end -}}
{{- if and $svc.kafka (hasPrefix "SASL_" $.Values.kafka.securityProtocol) (not (dig "kafkaCredentials" "secretName" "" $svc)) -}}
{{- fail (printf "services.%s: kafka.securityProtocol %s needs kafkaCredentials.secretName (the Secret of its principal's password)" $name $.Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if and (eq $svc.role "portal") (not (dig "sessionKeys" "secretName" "" $svc)) (or $svc.autoscaling.enabled (gt (int $svc.replicas) 1)) -}}
{{- fail (printf "services.%s.sessionKeys.secretName: more than one portal pod needs one shared session key Secret (each pod would seal cookies with its own random key)" $name) -}}
{{- end -}}
{{- with $svc.payments -}}
{{- if eq .provider "stripe" -}}
{{- $_ := required (printf "services.%s.payments.stripe.secretName: payments.provider stripe needs the Secret holding the Stripe API key and webhook signing secret (or choose payments.provider sandbox with payments.sandbox: true, which settles top-ups without money)" $name) (dig "stripe" "secretName" "" .) -}}
{{- else if not .sandbox -}}
{{- fail (printf "services.%s.payments.sandbox: payments.provider sandbox settles every top-up without money; set payments.sandbox: true to mean it (a demo cluster only)" $name) -}}
{{- end -}}
{{- end -}}
{{- if and $svc.autoscaling.enabled (gt (int $svc.autoscaling.minReplicas) (int $svc.autoscaling.maxReplicas)) -}}
{{- fail (printf "services.%s.autoscaling: minReplicas (%v) is above maxReplicas (%v)" $name $svc.autoscaling.minReplicas $svc.autoscaling.maxReplicas) -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.environment "production") (not (hasPrefix "SASL_" .Values.kafka.securityProtocol)) -}}
{{- fail (printf "kafka.securityProtocol %s authenticates no one (every service could write every topic): production needs SASL_SSL or SASL_PLAINTEXT; set environment: development for a local cluster" .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- if and (eq .Values.environment "production") (eq (dig "billing" "payments" "provider" "stripe" .Values.services) "sandbox") (dig "billing" "payments" "sandbox" false .Values.services) -}}
{{- fail "services.billing.payments.provider sandbox settles top-ups without money: production takes Stripe (environment: development for a demo cluster)" -}}
{{- end -}}
{{- if ne (len $gateways) 1 -}}
{{- fail (printf "services: exactly one entry must have role gateway, found %d %v" (len $gateways) $gateways) -}}
{{- end -}}
{{- range $where, $tag := $tags -}}
{{- if eq (lower $tag) "latest" -}}
{{- fail (printf "%s: %q is not a pinned version; give the release's tag (e.g. 0.1.0 or a git sha)" $where $tag) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.topics.provision (not (hasKey .Values.services .Values.topics.imageFrom)) -}}
{{- fail (printf "topics.imageFrom: %q is not a key of services" .Values.topics.imageFrom) -}}
{{- end -}}
{{- if and .Values.topics.provision (hasPrefix "SASL_" .Values.kafka.securityProtocol) (not .Values.kafka.admin.secretName) -}}
{{- fail (printf "kafka.admin.secretName: the provision Job authenticates as %q (kafka.securityProtocol %s) and needs its password's Secret" .Values.kafka.admin.username .Values.kafka.securityProtocol) -}}
{{- end -}}
{{- end }}

{{/* NetworkPolicy egress rules shared by the services and the hook Jobs. */}}
{{- define "gpucloud.egress.dns" -}}
- ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
  to:
    {{- toYaml .Values.networkPolicy.dnsPeers | nindent 4 }}
{{- end }}

{{- define "gpucloud.egress.kafka" -}}
- ports:
    {{- range .Values.kafka.ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
  to:
    {{- toYaml .Values.kafka.networkPeers | nindent 4 }}
{{- end }}

{{/* (list $ peers): peers default to postgres.networkPeers. */}}
{{- define "gpucloud.egress.postgres" -}}
{{- $root := index . 0 -}}
- ports: [{port: {{ $root.Values.postgres.port }}, protocol: TCP}]
  to:
    {{- toYaml (index . 1 | default $root.Values.postgres.networkPeers) | nindent 4 }}
{{- end }}

{{/* The gateway's key in services (validated: exactly one entry has role gateway). */}}
{{- define "gpucloud.gatewayName" -}}
{{- range $name, $entry := .Values.services -}}
{{- if eq $entry.role "gateway" }}{{ $name }}{{ end -}}
{{- end -}}
{{- end }}
