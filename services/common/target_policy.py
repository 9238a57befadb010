"""Which targets Hookbus may call (contract §6–§7): https unless http is allowed,
no forbidden domain, and no address in a private, loopback, link-local (cloud
metadata), CGNAT, multicast, unspecified, reserved or site-local range unless
allowed. IPv6 forms that carry an IPv4 address (IPv4-mapped and -compatible,
NAT64 64:ff9b::/96) are judged by the IPv4 address they carry; 6to4, Teredo and
local-use NAT64 (64:ff9b:1::/48) are refused outright (transition mechanisms no
webhook endpoint needs, whose relays reach addresses we cannot see). A host that
ends in a number must be a dotted-quad IPv4 address: `127.1`, `2130706433` or
`0x7f.1` are what resolvers turn into loopback, so they are refused as written.

Pure: ingest applies it to literal addresses when a webhook is written, the
deliverer to every resolved address at every attempt."""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from yarl import URL

from services.common.config import IPNetwork

MAX_TARGET_LENGTH = 742
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")
_NUMBER = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


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
            # The host as aiohttp connects to it: yarl IDNA-folds it (fullwidth digits,
            # ideographic full stops), so "127.0.0.\uff11" reaches 127.0.0.1 unresolved.
            seen = URL(url)
            folded = {seen.host, seen.raw_host} - {None}
        except ValueError as exc:
            return f"not a valid URL ({exc})"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "must be an absolute http(s) URL"
        if parts.scheme == "http" and not self.allow_http:
            return "must use https"
        if parts.username or parts.password:
            return "must not carry credentials"
        for host in {parts.hostname, *folded}:
            if (reason := self._host_refusal(host.rstrip(".").lower())) is not None:
                return reason
        return None

    def _host_refusal(self, host: str) -> str | None:
        for domain in self.forbidden_domains:
            domain = domain.lower().lstrip(".")
            if host == domain or host.endswith("." + domain):
                return f"the domain {domain} is forbidden"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            if host == "localhost" or host.endswith(".localhost"):
                return self.address_refusal(ipaddress.ip_address("127.0.0.1"))
            if _NUMBER.match(host.rsplit(".", 1)[-1]):
                return ("a numeric host must be a dotted-quad IPv4 address (resolvers read "
                        f"{host!r} as one, in a form that hides what it is)")
            return None
        return self.address_refusal(address)

    def address_refusal(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        """Why connecting to `address` is refused, or None."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in net for net in self.allowed_private):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            carried = _carried_ipv4(address)
            if carried is not None and not any(carried in net for net in self.allowed_private):
                reason = _non_public_reason(carried)
                if reason is not None:
                    return f"resolves to {address}, which carries a {reason} IPv4 address"
            if address in _NAT64:  # DNS64: the gateway connects to the IPv4 it carries
                return None
        reason = _non_public_reason(address)
        return None if reason is None else f"resolves to a {reason} address ({address})"


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries in its last 32 bits (NAT64's
    well-known prefix, the deprecated IPv4-compatible form), if any."""
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


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
    if isinstance(address, ipaddress.IPv6Address):
        if address in ipaddress.ip_network("fc00::/7"):
            return "unique-local"
        if address.is_site_local:
            return "site-local"
        if address in _SIX_TO_FOUR:
            return "6to4"
        if address in _TEREDO:
            return "Teredo"
        if address in _NAT64_LOCAL:
            return "local-use NAT64"
    if address.is_private or address.is_reserved or not address.is_global:
        return "private"
    return None
