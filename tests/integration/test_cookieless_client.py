"""The SCIM HTTP client keeps no cookie: a server's Set-Cookie is never stored nor sent back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from consumer.scim.client import build_http_client
from consumer.settings import HttpTransport


@pytest.fixture
async def cookie_server() -> AsyncIterator[tuple[str, list[str | None]]]:
    """A server on 127.0.0.1 that sets a cookie on every answer and notes each Cookie header."""
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        response = web.json_response({"ok": True})
        response.set_cookie("AWSALB", "sticky-value", path="/")
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("transport", list(HttpTransport))
async def test_a_set_cookie_is_neither_kept_nor_sent_back(
    cookie_server: tuple[str, list[str | None]], transport: HttpTransport
) -> None:
    """Three requests to a server setting a cookie each time: no Cookie header ever arrives."""
    url, seen = cookie_server
    client = build_http_client(transport, timeout=5.0, max_connections=2)
    try:
        for _ in range(3):
            response = await client.get(f"{url}/scim/v2/Users/u-1")
            assert response.status_code == 200
            assert "AWSALB" in response.headers["Set-Cookie"]
        assert list(client.cookies.jar) == []
    finally:
        await client.aclose()
    assert seen == [None, None, None]


async def test_a_cookieless_client_refuses_cookies() -> None:
    """Handing the client cookies is an error, not a silent no-op."""
    client = build_http_client(HttpTransport.AIOHTTP, timeout=5.0, max_connections=2)
    try:
        with pytest.raises(TypeError, match="keeps no cookies"):
            client.cookies = {"session": "x"}
    finally:
        await client.aclose()
