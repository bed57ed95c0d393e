"""iam's events: written to its outbox through one publisher (source `iam`; each event's
topic comes from the contract catalog)."""

from iam import SERVICE
from platformkit.outbox import EventPublisher

EVENTS = EventPublisher(SERVICE)
