"""The SDK's version and the User-Agent its clients send."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("hookbus")
except PackageNotFoundError:  # run from a checkout that was not installed
    VERSION = "0.0.0"

USER_AGENT = f"hookbus-python/{VERSION}"
