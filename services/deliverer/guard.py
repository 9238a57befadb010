"""The SSRF guard on name resolution: every address a target's name resolves to
is checked against the target policy at every attempt, and the connection goes
to those very addresses, so there is no second lookup for DNS rebinding to win.
(Literal addresses skip resolution and are checked by `TargetPolicy.url_refusal`.)"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from services.common.target_policy import TargetPolicy


class TargetRefused(OSError):
    """The target resolves to an address the policy forbids."""


class GuardedResolver(AbstractResolver):
    def __init__(self, policy: TargetPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            refusal = self._policy.address_refusal(ipaddress.ip_address(result["host"]))
            if refusal is not None:
                raise TargetRefused(f"{host} {refusal}")
        return results

    async def close(self) -> None:
        await self._inner.close()


class StaticResolver(AbstractResolver):
    """Names to fixed addresses, for tests and for pinning names in development."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self._table = table

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        addresses = self._table.get(host)
        if not addresses:
            raise OSError(f"cannot resolve {host}")
        return [_result(host, address, port) for address in addresses]

    async def close(self) -> None:
        return None


def _result(host: str, address: str, port: int) -> Any:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return {"hostname": host, "host": address, "port": port, "family": family,
            "proto": 0, "flags": socket.AI_NUMERICHOST}
