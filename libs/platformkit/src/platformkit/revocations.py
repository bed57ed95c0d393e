"""Fleet-wide API-key revocation: a small in-process projection every service runs.

iam publishes `iam.api-key.revoked` on `iam.service-account.v1` (through its outbox) and
stamps every token minted by the client-credentials grant with the key's id (`api_key`).
Each service reads that topic with a group-less consumer (every replica sees every
partition, nothing is committed: a restart replays from the beginning) and keeps the
revoked key ids in memory; the token verifier consults them, so a revoked key's tokens are
refused across the fleet within seconds (the relay's wake-up plus one fetch), not when
they expire. No request path calls iam.

Memory stays bounded: a revoked key's tokens were all minted before its revocation and live
at most the access-token lifetime (5 min), so a revocation older than `retention_s` (15 min
by default) can no longer match a valid token and is forgotten.

The payload is read leniently (only `key_id` and `revoked_at`), so iam can add fields.
"""

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable

import msgspec

from platformkit.consumers import TopicFeed
from platformkit.settings import ServiceSettings

log = logging.getLogger(__name__)

API_KEY_REVOKED = "iam.api-key.revoked"


class _Revoked(msgspec.Struct):
    key_id: uuid.UUID
    revoked_at: dt.datetime


class RevocationProjection(TopicFeed):
    name = "api-key revocations"
    event_type = API_KEY_REVOKED

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        retention_s: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(settings)
        self.retention_s = retention_s
        self.clock = clock
        self._revoked: dict[str, float] = {}  # key id -> revoked_at (epoch seconds)
        self.applied = 0

    def is_revoked(self, key_id: str) -> bool:
        return key_id in self._revoked

    def __len__(self) -> int:
        return len(self._revoked)

    def apply(self, event_type: str | None, value: bytes | None) -> None:
        """Fold one record in (other event types on the topic are ignored)."""
        if event_type != API_KEY_REVOKED or not value:
            return
        try:
            event = msgspec.json.decode(value, type=_Revoked)
        except msgspec.DecodeError:
            log.warning("unreadable api-key revocation skipped")
            return
        revoked_at = event.revoked_at.timestamp()
        if self.clock() - revoked_at < self.retention_s:
            self._revoked[str(event.key_id)] = revoked_at
            self.applied += 1

    def after_poll(self) -> None:
        self.prune()

    def prune(self) -> None:
        horizon = self.clock() - self.retention_s
        for key_id in [k for k, at in self._revoked.items() if at < horizon]:
            del self._revoked[key_id]
