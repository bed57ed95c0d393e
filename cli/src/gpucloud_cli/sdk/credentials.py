"""Where a client's bearer token comes from.

- `StaticToken`: a token you already have (5 minutes of life; nothing renews it).
- `StoredSession`: a session of the config directory (`gpucloud login`). Its access token
  is renewed shortly before it expires, under the directory's lock: a user session with
  its refresh token (iam rotates it on every use, so the new one is written back before
  the old one could be presented twice), a service account's with its API key (client
  credentials grant). A refresh iam refuses means the session is over: `SessionExpired`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from gpucloud_cli.sdk.errors import ApiError, NotSignedIn, SessionExpired

if TYPE_CHECKING:
    from gpucloud_cli.config import Session, Store
    from gpucloud_cli.sdk.models import Token

# renew this long before the access token's expiry (iam's tokens live 300 s; a request
# may take a few seconds, and clocks differ)
RENEW_BEFORE_S = 30.0


class TokenSource(Protocol):
    def token(self) -> str: ...

    def renew(self) -> bool:
        """After a 401: get a new token if this source can; whether it did."""
        ...


class StaticToken:
    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def renew(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "StaticToken(***)"


# (refresh_token) -> Token ; (api_key) -> Token
Refresher = Callable[[str], "Token"]


class StoredSession:
    def __init__(
        self,
        store: Store,
        session_key: str,
        refresh: Refresher,
        mint: Refresher,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.session_key = store, session_key
        self._refresh, self._mint, self._clock = refresh, mint, clock
        self._session: Session | None = None

    def _load(self) -> Session:
        session = self.store.load().sessions.get(self.session_key)
        if session is None:
            raise NotSignedIn("this session was signed out: run `gpucloud login`")
        return session

    def token(self) -> str:
        session = self._session or self._load()
        if session.access_expires_at - RENEW_BEFORE_S > self._clock():
            self._session = session
            return session.access_token
        return self._renewed(stale=session.access_token).access_token

    def renew(self) -> bool:
        current = self._session or self._load()
        self._renewed(stale=current.access_token, force=True)
        return True

    def _renewed(self, stale: str, force: bool = False) -> Session:
        with self.store.edit() as state:
            session = state.sessions.get(self.session_key)
            if session is None:
                raise NotSignedIn("this session was signed out: run `gpucloud login`")
            fresh = session.access_token != stale or (
                not force and session.access_expires_at - RENEW_BEFORE_S > self._clock()
            )
            if not fresh:  # nobody renewed it while we waited for the lock
                self._renew(session)
            self._session = session
        return session

    def _renew(self, session: Session) -> None:
        started = self._clock()
        try:
            if session.api_key:
                answer = self._mint(session.api_key)
            elif session.refresh_token:
                answer = self._refresh(session.refresh_token)
            else:
                raise SessionExpired(
                    "the session has no refresh token (an MFA-enrollment sign-in): "
                    "run `gpucloud login` again"
                )
        except ApiError as exc:
            if exc.problem_class != "auth":
                raise
            what = "API key" if session.api_key else "session"
            raise SessionExpired(
                f"the {what} can no longer be renewed ({exc.detail or exc.title}): "
                "run `gpucloud login`"
            ) from exc
        session.access_token = answer.access_token
        session.access_expires_at = started + answer.expires_in
        if answer.refresh_token:
            session.refresh_token = answer.refresh_token

    def __repr__(self) -> str:
        return f"StoredSession({self.session_key!r})"
