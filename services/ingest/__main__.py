"""`python -m services.ingest`: serve the API until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import sys

from aiohttp import web
import prometheus_client
import uvloop

from services.common import logs
from services.common.config import Env, settings_or_exit
from services.ingest.app import REQUESTS_GRACE, create_app
from services.ingest.settings import Settings


def main() -> int:
    settings = settings_or_exit("ingest", Settings.from_env)
    prometheus_client.disable_created_metrics()  # no `_created` series beside each counter
    logs.configure("ingest", settings.log_format, Env().str("LOG_LEVEL", "INFO"))
    logging.getLogger(__name__).info("starting with %r", settings)
    web.run_app(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=None,
        shutdown_timeout=REQUESTS_GRACE / 2,  # waited twice (see REQUESTS_GRACE)
        loop=uvloop.new_event_loop(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
