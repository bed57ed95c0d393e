"""platformkit: the shared kit every gpucloud service is built from.

A service is one `ServiceDefinition` (platformkit.definition): routes, migrations,
subscriptions, batch subscriptions and jobs; the `ServiceRuntime` (platformkit.runtime)
runs all of it. Only what two or more services really share lives here: the CloudEvents
envelope, the transactional outbox (`EventPublisher`) and its relay, the consumer engine
with its inbox and dead-letter topic, supervised jobs, the Idempotency-Key runner, the
database unit of work, migrations, settings, every Kafka client, RFC 9457 errors, health
routes, heartbeats, metrics and telemetry. docs/architecture.md ("The kit") shows how a
service uses it. platformkit never imports a service.
"""
