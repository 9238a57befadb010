"""`make token APP=app_1` (or `SCOPE=admin`): print an API token signed with
HOOKBUS_JWT_SECRET, or with the development secret `make run` uses."""

from __future__ import annotations

import argparse
import os

from services.ingest.auth import issue_token

DEV_JWT_SECRET = "hookbus-dev-secret-do-not-use-in-production"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", help="the app the token acts for (scope app)")
    parser.add_argument("--scope", choices=("app", "admin"), default=None)
    args = parser.parse_args()
    scope = args.scope or ("app" if args.app else "admin")
    if scope == "app" and not args.app:
        parser.error("scope app needs --app (make token APP=app_1)")
    secret = os.environ.get("HOOKBUS_JWT_SECRET") or DEV_JWT_SECRET
    print(issue_token(secret, scope=scope, app_id=args.app if scope == "app" else None))


if __name__ == "__main__":
    main()
