"""Which event log instance answers for an app, and what ingest does with the
answer of a forwarded request (issue 11). Pure.

Each event log instance (services/eventlog) holds some partitions of the log and
publishes `GET /internal/owners`: `{"partitions": N, "owners": {"0": "http://…",
…}}`, the URL of the instance that actively owns each partition (one being
moved is absent). An app's partition is `partition_of(app_id, N)`. The map is
another service's answer: it is checked whole before it is believed, and a
broken or hostile one is refused (BadOwners), never a crash.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from services.eventlog.keys import partition_of

MAX_PARTITIONS = 10_000
MAX_URL_LENGTH = 1024
# An owner map is a few bytes a partition; ingest reads no more than this of one.
MAX_OWNERS_BODY = 1 << 20
# An event's detail holds its envelope (up to the `events` topic's 1 MB) and a
# few KiB a delivery; ingest relays no answer larger than this.
MAX_ANSWER_BODY = 16 << 20

MOVING = ("the event log is moving between instances (rebalancing or recovering); "
          "retry in a few seconds")
UNREACHABLE = "the event log is unavailable; retry in a few seconds"


class BadUrl(ValueError):
    """Not the base URL of an event log instance."""


class BadOwners(ValueError):
    """An owner map that cannot be believed."""


def base_url(text: str) -> str:
    """`text` as the base URL of an instance: http(s), a host, an optional port,
    nothing after them but an optional `/` (dropped)."""
    if not 0 < len(text) <= MAX_URL_LENGTH:
        raise BadUrl(f"must be 1 to {MAX_URL_LENGTH} characters")
    if not (text.isascii() and text.isprintable()) or " " in text:
        raise BadUrl("must be printable ASCII without spaces")
    try:
        parts = urlsplit(text)
        port = parts.port  # (raises on a port that is not one)
    except ValueError as exc:
        raise BadUrl(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise BadUrl("must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise BadUrl("must name no user or password")
    if not _host_name(parts.hostname or "") or parts.netloc.endswith(":"):
        raise BadUrl("must name a host (a DNS name or an IP address) and an optional port")
    if parts.path not in ("", "/") or parts.query or parts.fragment or text.endswith(("?", "#")):
        raise BadUrl("must hold no path, query or fragment (the instance's API is at /v1/…)")
    if port == 0:
        raise BadUrl("port 0 is no port")
    return text.removesuffix("/")


def _host_name(host: str) -> bool:
    if _DNS_NAME.fullmatch(host):
        return True
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


_DNS_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")


class _OwnersBody(msgspec.Struct):
    # Unknown fields are skipped: the event log may add some.
    partitions: int
    owners: dict[str, str]


_owners_decoder = msgspec.json.Decoder(_OwnersBody)


@dataclass(frozen=True, slots=True)
class OwnerMap:
    partitions: int
    owners: Mapping[int, str]  # partition -> base URL of its active owner

    def partition_of(self, app_id: str) -> int:
        return partition_of(app_id, self.partitions)

    def owner_of(self, app_id: str) -> str | None:
        """The base URL of the instance that owns `app_id`'s partition, if any does now."""
        return self.owners.get(self.partition_of(app_id))


def parse_owners(body: bytes) -> OwnerMap:
    """The map an instance answered at /internal/owners, or BadOwners saying what is wrong."""
    if len(body) > MAX_OWNERS_BODY:
        raise BadOwners(f"over {MAX_OWNERS_BODY} bytes")
    try:
        decoded = _owners_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadOwners(f"not an owner map: {exc}") from None
    except UnicodeDecodeError:
        raise BadOwners("not an owner map: not UTF-8") from None
    except RecursionError:
        raise BadOwners("not an owner map: JSON nests too deeply") from None
    partitions = decoded.partitions
    if not 0 < partitions <= MAX_PARTITIONS:
        raise BadOwners(f"partitions must be 1 to {MAX_PARTITIONS}, not {partitions}")
    owners: dict[int, str] = {}
    for name, url in decoded.owners.items():
        # Canonical decimal only: "01", "+1", " 1" or "¹" would name a partition
        # two ways, or none.
        if not (name.isascii() and name.isdigit() and (name == "0" or name[0] != "0")
                and len(name) <= len(str(MAX_PARTITIONS))):
            raise BadOwners(f"partition {name[:20]!r} is not a partition number")
        partition = int(name)
        if partition >= partitions:
            raise BadOwners(f"partition {partition} is not below partitions ({partitions})")
        try:
            owners[partition] = base_url(url)
        except BadUrl as exc:
            raise BadOwners(f"the owner of partition {partition}: {exc}") from None
    return OwnerMap(partitions, MappingProxyType(owners))


# --- what to do with each answer -------------------------------------------------

Failure = Literal["connect", "lost", "timeout"]
"""How a forwarded request failed without an answer: `connect`: it never
reached the instance (refused, unreachable, no such host), so nothing was done;
`lost`: the connection broke after the request may have been sent; `timeout`:
no whole answer in time."""

SAFE_METHODS = frozenset({"GET", "HEAD"})
# What the API documents for the forwarded routes, relayed as the instance wrote it.
RELAYED = frozenset({200, 202, 400, 401, 403, 404, 409, 413, 500, 503})


@dataclass(frozen=True, slots=True)
class Relay:
    """Answer the client with the instance's status, body and content type."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Refresh the owner map, then ask the (perhaps new) owner once more."""


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer the client with this error instead."""

    code: int
    message: str


Step = Relay | Retry | Refuse


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    refresh: bool  # look the owners up again at once (the map may be stale)


def after_answer(status: int, content_type: str, *, retried: bool) -> Decision:
    """What to do with an instance's answer."""
    if status == 421:  # not (or no longer) the owner: the map is stale
        return Decision(Refuse(503, MOVING) if retried else Retry(), refresh=True)
    if status not in RELAYED or content_type != "application/json":
        return Decision(Refuse(500, f"the event log gave an answer ingest cannot relay "
                                    f"(status {status}, {content_type or 'no content type'})"),
                        refresh=False)
    # Its 503 says it is rebalancing or restoring: relayed, and the map looked at again.
    return Decision(Relay(), refresh=status == 503)


def after_failure(failure: Failure, method: str, *, retried: bool,
                  timeout: float) -> Decision:
    """What to do when an instance gave no answer. A request that may have
    reached it is asked again only if asking twice does no harm (GET); a
    resend or replay is not (it would run twice)."""
    if failure == "connect" or (failure == "lost" and method in SAFE_METHODS):
        return Decision(Refuse(503, MOVING) if retried else Retry(), refresh=True)
    if failure == "lost":
        return Decision(Refuse(503, "the connection to the event log broke before it "
                                    "answered; the request may have been carried out: "
                                    "look before you retry"), refresh=True)
    if method in SAFE_METHODS:
        return Decision(Refuse(503, f"the event log did not answer within {timeout:g} s; "
                                    "retry later"), refresh=True)
    return Decision(Refuse(503, f"the event log did not answer within {timeout:g} s; the "
                                "request may have been carried out: look before you retry"),
                    refresh=True)


def too_large(size: int) -> Refuse:
    return Refuse(500, f"the event log's answer is over {MAX_ANSWER_BODY >> 20} MiB "
                       f"(at least {size} bytes); ingest does not relay it")


def forward_url(owner: str, path_qs: str) -> str:
    """Where a request for `path_qs` (an absolute path, with its query) goes."""
    if not path_qs.startswith("/") or path_qs.startswith("//"):
        raise ValueError(f"not an absolute path: {path_qs[:40]!r}")
    return owner + path_qs
