"""The shapes of the generated catalog (`gpucloud_contracts.catalog`): what a topic and an
event type are, and the lookups every reader of the catalog needs. Hand-written; the
catalog itself is generated from contracts/asyncapi."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgspec


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A Kafka topic as its AsyncAPI channel binding declares it."""

    name: str
    partitions: int
    replicas: int

    @property
    def dlq(self) -> str:
        """The dead-letter topic of this topic."""
        return f"{self.name}.dlq"


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One CloudEvents type: the topic it is published on and its payload Struct."""

    type: str
    topic: str
    payload: type[msgspec.Struct]
    family: str


def spec_of(events: Mapping[str, EventSpec], ce_type: str) -> EventSpec:
    """The spec of an event type (KeyError, naming the contracts, for an unknown type)."""
    try:
        return events[ce_type]
    except KeyError:
        raise KeyError(f"unknown event type {ce_type!r}: not in contracts/asyncapi") from None
