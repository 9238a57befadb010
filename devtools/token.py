"""`make token APP=app_1` (or `SCOPE=admin`; `TTL=8h` for longer than the 1 h
default): print an API token signed with HOOKBUS_JWT_SECRET, or with the
development secret `make run` uses. Every token expires; ingest refuses one that
lives longer than HOOKBUS_JWT_MAX_LIFETIME (24 h by default). With
HOOKBUS_JWT_ISSUER / HOOKBUS_JWT_AUDIENCE set, the token names them."""

from __future__ import annotations

import argparse
import os

from services.common.config import ConfigError, parse_duration
from services.ingest.auth import issue_token

DEV_JWT_SECRET = "hookbus-dev-secret-do-not-use-in-production"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", help="the app the token acts for (scope app)")
    parser.add_argument("--scope", choices=("app", "admin"), default=None)
    parser.add_argument("--ttl", default="1h", help="how long the token lives (e.g. 1h, 8h)")
    args = parser.parse_args()
    try:
        lifetime = int(parse_duration(args.ttl))
    except ConfigError as exc:
        parser.error(f"--ttl: {exc}")
    scope = args.scope or ("app" if args.app else "admin")
    if scope == "app" and not args.app:
        parser.error("scope app needs --app (make token APP=app_1)")
    secret = os.environ.get("HOOKBUS_JWT_SECRET") or DEV_JWT_SECRET
    print(issue_token(secret, scope=scope, app_id=args.app if scope == "app" else None,
                      lifetime=lifetime, issuer=os.environ.get("HOOKBUS_JWT_ISSUER") or None,
                      audience=os.environ.get("HOOKBUS_JWT_AUDIENCE") or None))


if __name__ == "__main__":
    main()
