"""Sign-in throttling per account and per client address (in process memory).

Failures are counted in a sliding window; past the limit further attempts are refused
(429 with Retry-After) until the oldest failure leaves the window, whether or not the
password is right, so guessing gains nothing. A success clears the account's failures.
Each replica counts on its own: a limit of N per replica is at most N x replicas overall,
which still turns an online guessing attack from millions of tries into dozens.
"""

import collections
import time
from collections.abc import Callable

from platformkit.errors import ProblemError


class TooManyAttempts(ProblemError):
    status, slug, title = 429, "too-many-attempts", "Too many sign-in attempts"


class LoginThrottle:
    def __init__(
        self,
        *,
        per_account: int = 5,
        per_address: int = 30,
        window_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {"account": per_account, "address": per_address}
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[tuple[str, str], collections.deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> collections.deque[float]:
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
        for key in (("account", account), ("address", address)):
            failures = self._recent(key, now)
            if len(failures) >= self.limits[key[0]]:
                retry_after = int(self.window_s - (now - failures[0])) + 1
                raise TooManyAttempts(
                    "too many failed sign-ins; try again later",
                    headers={"Retry-After": str(retry_after)},
                )

    def failed(self, account: str, address: str) -> None:
        now = self.clock()
        for key in (("account", account), ("address", address)):
            self._failures.setdefault(key, collections.deque()).append(now)

    def succeeded(self, account: str) -> None:
        self._failures.pop(("account", account), None)
