"""Which targets and addresses are refused (contract §6–§7)."""

from __future__ import annotations

import ipaddress

import pytest

from services.common.config import parse_cidrs
from services.common.target_policy import TargetPolicy

STRICT = TargetPolicy()


@pytest.mark.parametrize(("url", "reason"), [
    ("https://example.com/hook", None),
    ("https://93.184.216.34/x", None),
    ("http://example.com/hook", "must use https"),
    ("ftp://example.com", "absolute http(s) URL"),
    ("/relative", "absolute http(s) URL"),
    ("https://user:pw@example.com", "credentials"),
    ("https://example.com:99999/", "not a valid URL"),
    ("https://" + "a" * 740 + ".com", "at most 742"),
    ("https://127.0.0.1/", "loopback"),
    ("https://localhost:8443/", "loopback"),
    ("https://10.1.2.3/", "private"),
    ("https://192.168.0.1/", "private"),
    ("https://172.16.5.5/", "private"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://100.64.1.1/", "CGNAT"),
    ("https://224.0.0.1/", "multicast"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://[::1]/", "loopback"),
    ("https://[fd00::1]/", "unique-local"),
    ("https://[fe80::1]/", "link-local"),
    ("https://[::ffff:10.0.0.1]/", "private"),
    # Issue 10: the forms that used to pass.
    ("https://[fec0::1]/", "site-local"),
    ("https://[2002:7f00:1::1]/", "6to4"),          # 6to4 carrying 127.0.0.1
    ("https://[2002:a00:1::1]/", "6to4"),           # ... and 10.0.0.1
    ("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "Teredo"),
    ("https://[64:ff9b::7f00:1]/", "carries a loopback IPv4"),  # NAT64
    ("https://[64:ff9b:1::a00:1]/", "local-use NAT64"),
    ("https://[::127.0.0.1]/", "carries a loopback IPv4"),       # IPv4-compatible
    ("https://[::a9fe:a9fe]/", "carries a link-local IPv4"),      # metadata, compatible
    ("https://127.1/", "dotted-quad"),
    ("https://2130706433/", "dotted-quad"),
    ("https://0x7f.1/", "dotted-quad"),
    ("https://0177.0.0.1/", "dotted-quad"),
    ("https://123.example.com/", None),             # a name that starts with digits
    ("https://[2606:4700::1111]/", None),
])
def test_strict_policy(url: str, reason: str | None) -> None:
    refusal = STRICT.url_refusal(url)
    if reason is None:
        assert refusal is None
    else:
        assert refusal is not None and reason in refusal


def test_allowed_ranges_and_http() -> None:
    policy = TargetPolicy(allow_http=True, allowed_private=parse_cidrs("127.0.0.0/8, 10.0.0.0/8"))
    assert policy.url_refusal("http://127.0.0.1:9000/") is None
    assert policy.url_refusal("http://localhost/") is None
    assert policy.url_refusal("https://10.9.9.9/") is None
    assert policy.url_refusal("https://192.168.1.1/") is not None
    assert policy.address_refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None


def test_forbidden_domain_suffixes() -> None:
    policy = TargetPolicy(forbidden_domains=("conversation-api.sinch.com",))
    assert policy.url_refusal("https://us.conversation-api.sinch.com/x") is not None
    assert policy.url_refusal("https://conversation-api.sinch.com./x") is not None
    assert policy.url_refusal("https://notconversation-api.sinch.com/x") is None
    # aiohttp (yarl) folds fullwidth letters to ASCII before it resolves the name.
    assert policy.url_refusal("https://us.\uff43onversation-api.sinch.com/x") is not None


# yarl, which aiohttp uses, IDNA-folds the host (NFKC, ideographic full stops) before
# it connects: these reach 127.0.0.1 as a literal address, with no resolver to ask.
@pytest.mark.parametrize("url", [
    "https://127.0.0.\uff11/",                   # fullwidth digit one
    "https://127\u30020\u30020\u30021/",          # ideographic full stops
    "https://127.0.0.\u2460/",                   # circled digit one
    "https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",  # fullwidth localhost
    "https://[::1%25lo]/",
])
def test_hosts_judged_as_aiohttp_connects_to_them(url: str) -> None:
    assert STRICT.url_refusal(url) is not None


@pytest.mark.parametrize("url", [
    "https://b\u00fccher.example/hook",            # an IDN name is still fine
    "https://xn--bcher-kva.example/hook",
    "https://my_host.example.com/hook",
    "https://[64:ff9b::808:808]/hook",           # NAT64 (DNS64) carrying 8.8.8.8
])
def test_public_targets_accepted(url: str) -> None:
    assert STRICT.url_refusal(url) is None


def test_nat64_judged_by_the_ipv4_it_carries() -> None:
    assert STRICT.address_refusal(ipaddress.ip_address("64:ff9b::808:808")) is None
    assert "loopback" in (STRICT.address_refusal(ipaddress.ip_address("64:ff9b::7f00:1")) or "")
    allowed = TargetPolicy(allowed_private=parse_cidrs("10.0.0.0/8"))
    assert allowed.address_refusal(ipaddress.ip_address("64:ff9b::a00:1")) is None
