"""appplatform's events: written to its outbox through one publisher (source `appplatform`;
each event's topic comes from the contract catalog)."""

from appplatform import SERVICE
from platformkit.outbox import EventPublisher

EVENTS = EventPublisher(SERVICE)
