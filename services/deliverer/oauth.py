"""OAuth2 client-credentials tokens for targets that require them (Sinch's
`client_credentials`): fetched from the webhook's token endpoint with BASIC or
FORM client authentication, cached for `expires_in` clamped to 30–3600 s, one
fetch at a time per credential set. The token request goes through the same
guarded session as deliveries, so it is under the same SSRF policy, and at most
64 KiB of its answer is read."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time

import aiohttp
import msgspec

from schemas.webhooks import ClientCredentials
from services.deliverer.guard import TargetRefused

MIN_TTL, MAX_TTL = 30.0, 3600.0
MAX_TOKEN_RESPONSE = 64 * 1024  # bytes of a token endpoint's answer read, at most
_MIN_SWEEP = 1024  # cached tokens before expired ones are first swept


class TokenError(Exception):
    """No token could be had; the attempt fails (and is retried)."""


class _TokenResponse(msgspec.Struct):
    access_token: str
    expires_in: float = MAX_TTL


def _cache_key(creds: ClientCredentials) -> str:
    parts = (creds.endpoint, creds.client_id, creds.client_secret, creds.scope or "",
             creds.token_request_type)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class TokenCache:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._tokens: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0
        self._sweep_at = _MIN_SWEEP

    async def token(self, creds: ClientCredentials, *, stale: str | None = None) -> str:
        """A valid token; `stale` is one the target refused, so fetch anew."""
        key = _cache_key(creds)
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._tokens.get(key)
            if cached and cached[0] != stale and cached[1] > time.monotonic():
                return cached[0]
            token, ttl = await self._fetch(creds)
            self._tokens[key] = (token, time.monotonic() + ttl)
        if len(self._tokens) > self._sweep_at:
            self._sweep()
        return token

    def _sweep(self) -> None:
        """Forget expired tokens and idle locks: credentials change (and a tenant
        can change them for every event), so the maps would only grow."""
        now = time.monotonic()
        for key, (_, expires) in list(self._tokens.items()):
            lock = self._locks.get(key)
            if expires <= now and (lock is None or not lock.locked()):
                del self._tokens[key]
                self._locks.pop(key, None)
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._tokens))

    async def _fetch(self, creds: ClientCredentials) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        headers = {}
        if creds.scope:
            form["scope"] = creds.scope
        if creds.response_type:
            form["response_type"] = creds.response_type
        if creds.token_request_type == "BASIC":
            pair = f"{creds.client_id}:{creds.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form |= {"client_id": creds.client_id, "client_secret": creds.client_secret}
        self.fetches += 1
        try:
            async with self._session.post(creds.endpoint, data=form, headers=headers,
                                          allow_redirects=False) as response:
                if response.status != 200:
                    raise TokenError(f"token endpoint answered HTTP {response.status}")
                body = await _read_bounded(response, MAX_TOKEN_RESPONSE)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, TargetRefused):
                raise TargetRefused(f"token endpoint: {exc.os_error}") from exc
            raise TokenError(f"token request failed: cannot connect: {exc.os_error}") from exc
        except aiohttp.ClientError as exc:
            raise TokenError(f"token request failed: {type(exc).__name__}: {exc}") from exc
        try:
            parsed = msgspec.json.decode(body, type=_TokenResponse)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter
            raise TokenError(f"token endpoint answered no usable token: {exc}") from exc
        if not parsed.access_token.isprintable():  # CR/LF would inject headers
            raise TokenError("token endpoint answered a token with control characters")
        return parsed.access_token, min(MAX_TTL, max(MIN_TTL, parsed.expires_in))


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, unless it is longer than `limit` bytes (then a TokenError)."""
    if (response.content_length or 0) > limit:
        raise TokenError(f"token endpoint answered more than {limit} bytes")
    body = bytearray()
    async for chunk in response.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > limit:
            raise TokenError(f"token endpoint answered more than {limit} bytes")
    return bytes(body)
