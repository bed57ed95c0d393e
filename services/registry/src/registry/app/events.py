"""registry's events: written to its outbox through one publisher (source `registry`; each
event's topic comes from the contract catalog)."""

from platformkit.outbox import EventPublisher
from registry import SERVICE

EVENTS = EventPublisher(SERVICE)
