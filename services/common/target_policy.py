"""Which targets Hookbus may call (contract §6–§7): https unless http is allowed,
no forbidden domain, and no address in a private, loopback, link-local (cloud
metadata), CGNAT, multicast, unspecified or reserved range unless allowed.

Pure: ingest applies it to literal addresses when a webhook is written, the
deliverer to every resolved address at every attempt."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.common.config import IPNetwork

MAX_TARGET_LENGTH = 742
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    allow_http: bool = False
    allowed_private: tuple[IPNetwork, ...] = ()
    forbidden_domains: tuple[str, ...] = ()

    # Asked at every attempt; a policy lives as long as its service.
    @functools.lru_cache(maxsize=65536)  # noqa: B019
    def url_refusal(self, url: str) -> str | None:
        """Why `url` may not be a target, or None."""
        if len(url) > MAX_TARGET_LENGTH:
            return f"must be at most {MAX_TARGET_LENGTH} characters"
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            return f"not a valid URL ({exc})"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "must be an absolute http(s) URL"
        if parts.scheme == "http" and not self.allow_http:
            return "must use https"
        if parts.username or parts.password:
            return "must not carry credentials"
        host = parts.hostname.rstrip(".").lower()
        for domain in self.forbidden_domains:
            domain = domain.lower().lstrip(".")
            if host == domain or host.endswith("." + domain):
                return f"the domain {domain} is forbidden"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if host == "localhost" or host.endswith(".localhost"):
                return self.address_refusal(ipaddress.ip_address("127.0.0.1"))
            return None
        return self.address_refusal(address)

    def address_refusal(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        """Why connecting to `address` is refused, or None."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in net for net in self.allowed_private):
            return None
        reason = _non_public_reason(address)
        return None if reason is None else f"resolves to a {reason} address ({address})"


def _non_public_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "CGNAT"
    if isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"):
        return "unique-local"
    if address.is_private or address.is_reserved or not address.is_global:
        return "private"
    return None
