"""Sign-in throttling per (account, client address) and per client address, in bounded
process memory.

Failures are counted in a sliding window. Past a limit, further attempts with that key are
refused (429 with Retry-After) until its oldest failure leaves the window, whether or not
the password is right, so guessing gains nothing:

- (account, address): 5 failures in 15 minutes close that account to that address only.
  There is deliberately no account-wide lock: it would let anyone lock the owner out by
  failing on purpose (OWASP Authentication Cheat Sheet, "account lockout" as a denial of
  service). A guesser spread over N addresses gets 5 x N tries per 15 minutes, each one an
  argon2id verification, and none at all behind a second factor.
- address: 30 failures in 15 minutes (over any accounts) close every account to that
  address: one client cannot spray passwords over many accounts.

A complete sign-in clears its (account, address) failures. The address is the client's,
as the configured proxy hops report it (`client_address`), never a header the client
wrote. Memory is bounded: expired entries are pruned as they are met and in a sweep every
`sweep_every` failures, and past `max_keys` keys the oldest are dropped (which forgets
some old failures rather than grow without bound). Each replica counts on its own.
"""

import collections
import ipaddress
import time
from collections.abc import Callable, Iterable

from platformkit.errors import ProblemError


class TooManyAttempts(ProblemError):
    status, slug, title = 429, "too-many-attempts", "Too many sign-in attempts"


def client_address(peer: str, forwarded_for: str, trusted: Iterable[str], hops: int = 1) -> str:
    """The client's address. Only a peer inside a trusted network (the gateway) is believed
    about X-Forwarded-For, and only about the entries the trusted hops appended: the one
    `hops` places from the right (each proxy appends the address it was called from)."""
    networks = [ipaddress.ip_network(n, strict=False) for n in trusted]
    try:
        peer_ip = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if not any(peer_ip in n for n in networks):
        return peer
    entries = [e.strip() for e in forwarded_for.split(",") if e.strip()]
    if not entries or hops < 1:
        return peer
    candidate = entries[-min(hops, len(entries))]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer


class LoginThrottle:
    def __init__(
        self,
        *,
        per_account_address: int = 5,
        per_address: int = 30,
        window_s: float = 900.0,
        max_keys: int = 100_000,
        sweep_every: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {"pair": per_account_address, "address": per_address}
        self.window_s = window_s
        self.max_keys = max_keys
        self.sweep_every = sweep_every
        self.clock = clock
        self._failures: dict[tuple[str, ...], collections.deque[float]] = {}
        self._since_sweep = 0

    def __len__(self) -> int:
        return len(self._failures)

    @staticmethod
    def _keys(account: str, address: str) -> tuple[tuple[str, ...], ...]:
        return (("pair", account, address), ("address", address))

    def _recent(self, key: tuple[str, ...], now: float) -> collections.deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return collections.deque()
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def check(self, account: str, address: str) -> None:
        now = self.clock()
        for key in self._keys(account, address):
            failures = self._recent(key, now)
            if len(failures) >= self.limits[key[0]]:
                retry_after = int(self.window_s - (now - failures[0])) + 1
                raise TooManyAttempts(
                    "too many failed sign-ins; try again later",
                    headers={"Retry-After": str(retry_after)},
                )

    def failed(self, account: str, address: str) -> None:
        now = self.clock()
        for key in self._keys(account, address):
            self._failures.setdefault(key, collections.deque()).append(now)
        self._since_sweep += 1
        if self._since_sweep >= self.sweep_every or len(self._failures) > self.max_keys:
            self._sweep(now)

    def succeeded(self, account: str, address: str) -> None:
        self._failures.pop(("pair", account, address), None)

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        for key in list(self._failures):
            self._recent(key, now)
        excess = len(self._failures) - self.max_keys
        if excess > 0:  # oldest keys first (insertion order)
            for key in list(self._failures)[:excess]:
                del self._failures[key]
