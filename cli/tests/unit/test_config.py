import os
import stat
import threading
import time
from pathlib import Path

import pytest

from gpucloud_cli.config import Context, Session, Store, config_dir
from gpucloud_cli.sdk.credentials import StoredSession
from gpucloud_cli.sdk.errors import AuthError, SessionExpired
from gpucloud_cli.sdk.models import Token


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _session(**overrides) -> Session:
    values = {
        "key": Session.key_for("http://127.0.0.1:8080", "t1", "u1"),
        "gateway": "http://127.0.0.1:8080",
        "kind": "user",
        "subject": "u1",
        "tenant_id": "t1",
        "tenant_slug": "acme",
        "access_token": "at-0",
        "access_expires_at": time.time() + 300,
        "refresh_token": "gcr_0",
    }
    return Session(**(values | overrides))


def _signed_in(store: Store, session: Session) -> None:
    with store.edit() as state:
        state.sessions[session.key] = session
        state.contexts["acme/default"] = Context(
            "acme/default", session.gateway, session.key, "t1", "acme", "p1", "default"
        )
        state.current_context = "acme/default"


class TestConfigDirectory:
    def test_explicit_then_xdg_then_home(self, monkeypatch, tmp_path) -> None:
        monkeypatch.setenv("GPUCLOUD_CONFIG_DIR", str(tmp_path / "explicit"))
        assert config_dir() == tmp_path / "explicit"
        monkeypatch.delenv("GPUCLOUD_CONFIG_DIR")
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
        assert config_dir() == tmp_path / "xdg" / "gpucloud"
        monkeypatch.setenv("XDG_CONFIG_HOME", "relative/is/ignored")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert config_dir() == tmp_path / "home" / ".config" / "gpucloud"

    def test_files_are_0600_and_the_directory_0700_whatever_the_umask(self, tmp_path) -> None:
        store = Store(tmp_path / "gpucloud")
        previous = os.umask(0)
        try:
            _signed_in(store, _session())
        finally:
            os.umask(previous)
        assert _mode(store.directory) == 0o700
        for name in ("config.json", "credentials.json", ".lock"):
            assert _mode(store.directory / name) == 0o600, name
        assert not [p for p in store.directory.iterdir() if p.name.endswith(".tmp")]

    def test_a_loose_file_is_tightened_when_read(self, tmp_path) -> None:
        store = Store(tmp_path)
        _signed_in(store, _session())
        os.chmod(store.credentials_path, 0o644)
        os.chmod(store.directory, 0o755)  # noqa: S103 - the point of the test
        store.load()
        assert _mode(store.credentials_path) == 0o600
        with store.edit():
            pass
        assert _mode(store.directory) == 0o700

    def test_tokens_live_only_in_the_credentials_file(self, tmp_path) -> None:
        store = Store(tmp_path)
        _signed_in(store, _session(access_token="secret-at", refresh_token="gcr_secret"))
        assert "secret" not in store.config_path.read_text()
        assert "gcr_secret" in store.credentials_path.read_text()

    def test_round_trip_and_sign_out(self, tmp_path) -> None:
        store = Store(tmp_path)
        session = _session()
        _signed_in(store, session)
        state = store.load()
        assert state.context() == state.contexts["acme/default"]
        assert state.session_of(state.context()) == session
        with store.edit() as edited:
            assert edited.remove_session(session.key) == ["acme/default"]
        assert store.load().current_context is None
        assert store.load().sessions == {}

    def test_garbage_is_reported_not_overwritten(self, tmp_path) -> None:
        store = Store(tmp_path)
        store.ensure_directory()
        store.config_path.write_text("{not json")
        with pytest.raises(Exception, match="not valid JSON"):
            store.load()


class TestStoredSession:
    def test_a_fresh_token_is_used_as_is(self, tmp_path) -> None:
        store = Store(tmp_path)
        _signed_in(store, _session())
        source = StoredSession(store, _session().key, refresh=_never, mint=_never)
        assert source.token() == "at-0"

    def test_an_expiring_token_is_refreshed_and_the_rotated_token_written_back(
        self, tmp_path
    ) -> None:
        store = Store(tmp_path)
        _signed_in(store, _session(access_expires_at=time.time() + 10))
        presented = []

        def refresh(token: str) -> Token:
            presented.append(token)
            return Token("at-1", "Bearer", 300, "gcr_1")

        source = StoredSession(store, _session().key, refresh=refresh, mint=_never)
        assert source.token() == "at-1"
        saved = store.load().sessions[_session().key]
        assert (saved.access_token, saved.refresh_token, presented) == ("at-1", "gcr_1", ["gcr_0"])
        assert saved.access_expires_at > time.time() + 200

    def test_concurrent_commands_present_a_refresh_token_once(self, tmp_path) -> None:
        """iam revokes a session whose refresh token is presented twice: the lock and the
        re-read make the second command use the first one's new token."""
        store = Store(tmp_path)
        _signed_in(store, _session(access_expires_at=0))
        calls = []

        def slow_refresh(token: str) -> Token:
            calls.append(token)
            time.sleep(0.2)
            return Token(f"at-{len(calls)}", "Bearer", 300, f"gcr_{len(calls)}")

        tokens: list[str] = []
        sources = [
            StoredSession(store, _session().key, refresh=slow_refresh, mint=_never)
            for _ in range(4)
        ]
        threads = [threading.Thread(target=lambda s=s: tokens.append(s.token())) for s in sources]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert calls == ["gcr_0"]
        assert tokens == ["at-1"] * 4

    def test_an_api_key_session_re_mints(self, tmp_path) -> None:
        store = Store(tmp_path)
        _signed_in(
            store,
            _session(
                kind="service_account", refresh_token=None, api_key="gck_x", access_expires_at=0
            ),
        )
        minted = []
        source = StoredSession(
            store,
            _session().key,
            refresh=_never,
            mint=lambda key: minted.append(key) or Token("at-sa", "Bearer", 300),
        )
        assert source.token() == "at-sa" and minted == ["gck_x"]

    def test_a_refused_refresh_ends_the_session(self, tmp_path) -> None:
        store = Store(tmp_path)
        _signed_in(store, _session(access_expires_at=0))

        def refused(token: str) -> Token:
            raise AuthError(
                400,
                "invalid_grant",
                "the refresh token was already used",
                type="https://gpucloud.dev/problems/invalid-grant",
            )

        source = StoredSession(store, _session().key, refresh=refused, mint=_never)
        with pytest.raises(SessionExpired, match="already used"):
            source.token()

    def test_renew_after_a_401_uses_a_token_another_process_just_got(self, tmp_path) -> None:
        store = Store(tmp_path)
        _signed_in(store, _session())
        source = StoredSession(store, _session().key, refresh=_never, mint=_never)
        assert source.token() == "at-0"
        with store.edit() as state:  # another command refreshed meanwhile
            state.sessions[_session().key].access_token = "at-other"
        assert source.renew() is True
        assert source.token() == "at-other"


def _never(_: str) -> Token:
    raise AssertionError("must not be called")
