"""The token-refresh rules of portal.api against an in-process stand-in of iam's token
endpoint (httpx.MockTransport): one refresh per refresh token however many requests race,
the result reused, a refused refresh ending the session."""

import asyncio
import json
import time

import httpx
import pytest

from portal.api import Api, Refresher, SessionEnded
from portal.sessions import new_session


def jwt(claims: dict) -> str:
    import base64

    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"e30.{body}.sig"


INVALID_GRANT = {
    "type": "https://gpucloud.dev/problems/invalid-grant",
    "title": "invalid_grant",
    "status": 400,
}


class FakeIam:
    def __init__(self) -> None:
        self.refreshes: list[str] = []
        self.spent: set[str] = set()
        self.data_calls = 0
        self.expire_next = False

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/iam/token":
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            token = form["refresh_token"]
            self.refreshes.append(token)
            await asyncio.sleep(0.05)  # long enough for the racing requests to pile up
            if token in self.spent:
                return httpx.Response(400, json=INVALID_GRANT)
            self.spent.add(token)
            n = len(self.refreshes)
            return httpx.Response(
                200,
                json={"access_token": jwt({"sub": "u", "tenant": "t", "amr": ["pwd"], "n": n}),
                      "refresh_token": f"gcr_{n}", "expires_in": 300, "token_type": "Bearer"},
            )  # fmt: skip
        self.data_calls += 1
        if self.expire_next:
            self.expire_next = False
            return httpx.Response(401, json={"title": "Authentication required", "status": 401})
        return httpx.Response(200, json={"auth": request.headers["authorization"]})


def user_session(expires_in: float):
    session = new_session()
    session.kind, session.access_token, session.refresh_token = "user", jwt({}), "gcr_0"
    session.access_expires = time.time() + expires_in
    return session


@pytest.fixture
def iam():
    return FakeIam()


def client(iam: FakeIam) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url="http://gw", transport=httpx.MockTransport(iam.handle))


class TestRefresh:
    async def test_racing_requests_of_one_cookie_refresh_once(self, iam):
        refresher = Refresher()
        async with client(iam) as http:
            # Five requests carrying the same (nearly expired) cookie at once.
            apis = [Api(http, refresher, user_session(10)) for _ in range(5)]
            answers = await asyncio.gather(*(api.get("/v1/x") for api in apis))
        assert iam.refreshes == ["gcr_0"]
        assert len({a["auth"] for a in answers}) == 1
        assert all(api.renewed and api.session.refresh_token == "gcr_1" for api in apis)

    async def test_a_fresh_token_is_not_refreshed(self, iam):
        async with client(iam) as http:
            api = Api(http, Refresher(), user_session(240))
            await api.get("/v1/x")
        assert iam.refreshes == [] and not api.renewed

    async def test_a_401_refreshes_once_and_repeats_the_call(self, iam):
        iam.expire_next = True
        async with client(iam) as http:
            api = Api(http, Refresher(), user_session(240))
            assert (await api.get("/v1/x"))["auth"].startswith("Bearer e30.")
        assert iam.refreshes == ["gcr_0"] and iam.data_calls == 2

    async def test_a_refused_refresh_ends_the_session(self, iam):
        iam.spent.add("gcr_0")  # e.g. signed out elsewhere: the token was spent
        async with client(iam) as http:
            api = Api(http, Refresher(), user_session(10))
            with pytest.raises(SessionEnded):
                await api.get("/v1/x")

    async def test_an_operator_session_never_refreshes(self, iam):
        session = user_session(10)
        session.kind, session.refresh_token = "operator", None
        async with client(iam) as http:
            await Api(http, Refresher(), session).get("/v1/x")
            session.access_expires = time.time() - 1
            with pytest.raises(SessionEnded):
                await Api(http, Refresher(), session).get("/v1/x")
        assert iam.refreshes == []
