"""An httpx client that neither keeps nor sends cookies.

CXone's SCIM API and its token endpoint authenticate every request by its bearer token or
client credentials; nothing this service calls needs a cookie. httpx still reads every
response's `Set-Cookie` through the standard library's cookie jar, which builds a
`urllib.request.Request` and an `email.message.Message` per response: about a twentieth of the
service's CPU per event. A cookie a server sets is not kept, so none is ever sent back either.
"""

from __future__ import annotations

import httpx


class _NoCookies(httpx.Cookies):
    """A cookie jar that stays empty whatever a response sets."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keep nothing of the response's `Set-Cookie` headers."""


class CookielessClient(httpx.AsyncClient):
    """`httpx.AsyncClient` with a jar that keeps no cookie: nothing to read, nothing to send."""

    def __init__(self, **options: object) -> None:
        if "cookies" in options:
            raise TypeError("a cookieless client takes no cookies")
        super().__init__(**options)  # type: ignore[arg-type]
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        """Always empty."""
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        raise TypeError("a cookieless client keeps no cookies")
