-- Who caused an event and from where (platformkit.caller): the CloudEvents extension
-- attributes actor, actorkind and clientaddr, kept with the outbox row until it is relayed.
ALTER TABLE outbox ADD COLUMN actor text, ADD COLUMN actor_kind text, ADD COLUMN client_address text;
