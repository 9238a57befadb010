"""`python -m services.router`: run the router as a Faust worker until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

import faust
import prometheus_client
import uvloop

from services.common import logs
from services.common.config import settings_or_exit
from services.router.app import Router, RouterSupport
from services.router.settings import Settings


def main() -> int:
    settings = settings_or_exit("router", Settings.from_env)
    # uvloop, as every service: Faust (mode) runs on the policy's loop.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    prometheus_client.disable_created_metrics()  # no `_created` series beside each counter
    router = Router(settings)
    worker = faust.Worker(
        router.app,
        RouterSupport(router),
        loglevel=settings.log_level,
        logging_config=logs.logging_config("router", settings.log_format, settings.log_level),
        redirect_stdouts=False,
        quiet=True,
    )
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
