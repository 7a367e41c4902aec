"""The official Python MCP SDK (`mcp` 1.x, httpx) as an OAuth MCP client of the hub.

Started by `conformance/tests/oauth.rs` with the hub's MCP URL and nothing
else: the SDK's `OAuthClientProvider` must find everything from the hub's 401
alone (WWW-Authenticate resource_metadata -> RFC 9728 metadata -> the
authorization server's RFC 8414 metadata -> dynamic client registration ->
authorization code with PKCE and the resource indicator -> token). The
browser step is this script's: it follows the authorization URL with an httpx
client (cookies kept), logs in as SUBJECT and consents over HTTP at the
fixture's interaction endpoints, and hands the code back to the SDK.

usage: python sdk_discovery.py MCP_URL SUBJECT TOOL
prints one JSON line: {"tools": [...], "result": {...}, "scope": "..."}
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import httpx
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT_URI = "http://127.0.0.1:9/callback"


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class Browser:
    """Follows the authorization URL as a user agent would, login and consent automated."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.code: tuple[str, str | None] | None = None

    async def redirect(self, authorization_url: str) -> None:
        async with httpx.AsyncClient(follow_redirects=False, timeout=30) as http:
            url = authorization_url
            for _ in range(20):
                if url.startswith(REDIRECT_URI):
                    q = parse_qs(urlparse(url).query)
                    self.code = (q["code"][0], q.get("state", [None])[0])
                    return
                if "/interaction/" in url:
                    prompt = (await http.get(url)).json()["prompt"]
                    if prompt == "login":
                        r = await http.post(url + "/login", data={"login": self.subject})
                    elif prompt == "consent":
                        r = await http.post(url + "/confirm", data={})
                    else:
                        raise RuntimeError(f"unexpected prompt {prompt}")
                else:
                    r = await http.get(url)
                if "location" not in r.headers:
                    raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:300]}")
                url = urljoin(url, r.headers["location"])
            raise RuntimeError("too many redirects")

    async def callback(self) -> tuple[str, str | None]:
        assert self.code is not None, "the redirect handler got no code"
        return self.code


async def main(url: str, subject: str, tool: str) -> None:
    browser = Browser(subject)
    storage = MemoryStorage()
    oauth = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="ewii-oauth-sdk-test",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    async with streamablehttp_client(url, auth=oauth) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = sorted(t.name for t in (await session.list_tools()).tools)
            result = await session.call_tool(tool, {"sql": "SELECT count(*) AS n FROM customers"})
    print(
        json.dumps(
            {
                "tools": tools,
                "result": result.model_dump(mode="json", by_alias=True),
                "scope": storage.tokens.scope if storage.tokens else None,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(*sys.argv[1:4]), 120))
