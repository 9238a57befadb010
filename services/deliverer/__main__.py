"""`python -m services.deliverer`: deliver until SIGTERM or SIGINT, then finish
the attempts under way, commit, and exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import prometheus_client
import uvloop

from services.common import logs
from services.common.config import Env, settings_or_exit
from services.deliverer.app import Deliverer
from services.deliverer.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    deliverer = Deliverer(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, deliverer.stop)
    await deliverer.run()


def main() -> int:
    settings = settings_or_exit("deliverer", Settings.from_env)
    prometheus_client.disable_created_metrics()  # no `_created` series beside each counter
    logs.configure("deliverer", settings.log_format, Env().str("LOG_LEVEL", "INFO"))
    log.info("starting with %r", settings)
    uvloop.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
