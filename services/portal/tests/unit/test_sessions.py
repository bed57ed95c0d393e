import time

from portal.sessions import PendingSignIn, new_session, seal, unseal
from portal.settings import _key

KEY, OTHER = _key("one"), _key("two")


class TestSealedSessions:
    def test_a_sealed_session_opens_with_its_key_and_hides_its_tokens(self):
        session = new_session()
        session.kind, session.access_token = "user", "eyJ.secret.token"
        value = seal(session, KEY)
        assert "secret" not in value and "eyJ" not in value
        opened = unseal(value, (KEY,), 3600, time.time())
        assert opened == session

    def test_a_rotated_key_still_opens_older_cookies(self):
        value = seal(new_session(), OTHER)
        assert unseal(value, (KEY, OTHER), 3600, time.time()) is not None
        assert unseal(value, (KEY,), 3600, time.time()) is None

    def test_tampering_truncation_and_garbage_open_as_nothing(self):
        value = seal(new_session(), KEY)
        flipped = value[:20] + ("A" if value[20] != "A" else "B") + value[21:]
        for bad in (flipped, value[:-4], "", "%%%", "AQ", "x" * 200):
            assert unseal(bad, (KEY,), 3600, time.time()) is None, bad

    def test_an_expired_session_opens_as_nothing(self):
        old = new_session(now=time.time() - 7200)
        assert unseal(seal(old, KEY), (KEY,), 3600, time.time()) is None

    def test_a_pending_sign_in_is_dropped_once_it_expires(self):
        session = new_session()
        session.pending = PendingSignIn(email="a@b.c", password="pw", expires=time.time() - 1)
        opened = unseal(seal(session, KEY), (KEY,), 3600, time.time())
        assert opened is not None and opened.pending is None

    def test_reprs_never_show_tokens_or_passwords(self):
        session = new_session()
        session.access_token, session.refresh_token = "tok-abc", "gcr_refresh"
        session.pending = PendingSignIn(email="a@b.c", password="hunter2", expires=0)
        text = repr(session) + repr(session.pending)
        assert "tok-abc" not in text and "gcr_refresh" not in text and "hunter2" not in text

    def test_each_session_has_its_own_csrf_token(self):
        assert new_session().csrf != new_session().csrf
