"""The kit's own SQL migrations (outbox, inbox, idempotency keys), applied first in every
service database under the `kit` namespace (platformkit.service.migrate)."""
