"""platformkit: the shared kit every gpucloud service is built from.

Only what two or more services really share lives here: the CloudEvents envelope, the
transactional outbox and its relay, inbox-deduplicating consumers with a dead-letter
topic, the database unit of work, migrations, settings, RFC 9457 errors, health routes,
heartbeats and telemetry. platformkit never imports a service.
"""
