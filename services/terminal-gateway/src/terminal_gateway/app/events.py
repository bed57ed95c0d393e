"""terminal-gateway's events: written to its outbox through one publisher (source
`terminal-gateway`; each event's topic comes from the contract catalog)."""

from platformkit.outbox import EventPublisher
from terminal_gateway import SERVICE

EVENTS = EventPublisher(SERVICE)
