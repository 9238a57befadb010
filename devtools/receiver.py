"""`make receiver`: a local webhook endpoint for the quickstart. It prints every
POST it gets (signature headers and body) and answers 204.

    python -m devtools.receiver [--port 9000] [--secret whsec_...]

With `--secret` it also verifies the Standard Webhooks signature."""

from __future__ import annotations

import argparse

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SHOWN = ("webhook-id", "webhook-timestamp", "webhook-signature", "x-hub-signature-256",
         "user-agent")


def create_app(secret: str | None) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        print(f"POST {request.path}", flush=True)
        for name in SHOWN:
            print(f"  {name}: {request.headers.get(name)}")
        if secret:
            try:
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
    parser.add_argument("--secret", help="the webhook's secret, to verify signatures")
    args = parser.parse_args()
    print(f"receiving webhooks on http://127.0.0.1:{args.port}/", flush=True)
    web.run_app(create_app(args.secret), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
