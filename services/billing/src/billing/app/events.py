"""billing's events: written to its outbox through one publisher (source `billing`; each
event's topic comes from the contract catalog)."""

from billing import SERVICE
from platformkit.outbox import EventPublisher

EVENTS = EventPublisher(SERVICE)
