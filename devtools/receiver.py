"""`make receiver`: a local webhook endpoint for the quickstart. It prints every
POST it gets (signature headers and body) and answers 204.

    python -m devtools.receiver [--port 9000] [--secret whsec_...|whpk_...]

With `--secret` it also verifies the Standard Webhooks signature: a `whsec_`
secret the `v1` (HMAC) one, with the `standardwebhooks` library; a `whpk_`
public key (a `v1a` webhook's `public_key`) the `v1a` (ed25519) one."""

from __future__ import annotations

import argparse
import base64
import time

from aiohttp import web
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SHOWN = ("webhook-id", "webhook-timestamp", "webhook-signature", "x-hub-signature-256",
         "user-agent")
TOLERANCE = 300  # seconds a timestamp may be off, as the standardwebhooks library allows


def public_key(whpk: str) -> VerifyKey:
    """The key of a `whpk_` public key (base64 of its 32 bytes); ValueError if none.
    libsodium's (PyNaCl), which refuses small-order keys: OpenSSL's ed25519
    accepts a forged signature under one."""
    raw = base64.b64decode(whpk.removeprefix("whpk_"), validate=True)
    if len(raw) != 32:
        raise ValueError(f"a whpk_ key holds 32 bytes, not {len(raw)}")
    return VerifyKey(raw)


def verify_v1a(key: VerifyKey, body: bytes, headers: dict[str, str]) -> None:
    """Raises WebhookVerificationError unless a `v1a` signature of `headers` is
    `key`'s over `{webhook-id}.{webhook-timestamp}.{body}`, made within TOLERANCE
    of now."""
    headers = {name.lower(): value for name, value in headers.items()}
    timestamp = headers.get("webhook-timestamp", "")
    if not (timestamp.isascii() and timestamp.isdigit()) \
            or abs(time.time() - int(timestamp)) > TOLERANCE:
        raise WebhookVerificationError("missing or stale webhook-timestamp")
    signed = f"{headers.get('webhook-id', '')}.{timestamp}.".encode() + body
    for entry in headers.get("webhook-signature", "").split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1a":
            try:
                key.verify(signed, base64.b64decode(signature, validate=True))
                return
            except (BadSignatureError, ValueError):  # (b64decode of non-ASCII: ValueError)
                continue
    raise WebhookVerificationError("no v1a signature matches")


def create_app(secret: str | None) -> web.Application:
    key = public_key(secret) if secret and secret.startswith("whpk_") else None

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        print(f"POST {request.path}", flush=True)
        for name in SHOWN:
            print(f"  {name}: {request.headers.get(name)}")
        if secret:
            try:
                if key is not None:
                    verify_v1a(key, body, dict(request.headers))
                else:
                    Webhook(secret).verify(body, dict(request.headers))
                print("  signature: valid")
            except WebhookVerificationError as exc:
                print(f"  signature: INVALID ({exc})")
        print(f"  body: {body.decode(errors='replace')}", flush=True)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", receive)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", help="the webhook's whsec_ secret or whpk_ public key, "
                                         "to verify signatures")
    args = parser.parse_args()
    print(f"receiving webhooks on http://127.0.0.1:{args.port}/", flush=True)
    web.run_app(create_app(args.secret), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
