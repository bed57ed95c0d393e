"""gpuaas's events: written to its outbox through one publisher (source `gpuaas`; each
event's topic comes from the contract catalog)."""

from gpuaas import SERVICE
from platformkit.outbox import EventPublisher

EVENTS = EventPublisher(SERVICE)
