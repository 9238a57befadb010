"""Ingest's side of the event log (issue 11), pure: base URLs, the owner map an
instance publishes (hostile ones refused, never a crash), the owner of an app,
and what each answer or failure of a forwarded request leads to; the setting
HOOKBUS_EVENTLOG_URLS."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.config import ConfigError, Env
from services.eventlog.keys import partition_of
from services.ingest.eventlog_routing import (
    MAX_OWNERS_BODY,
    MAX_PARTITIONS,
    MOVING,
    BadOwners,
    BadUrl,
    Refuse,
    Relay,
    Retry,
    after_answer,
    after_failure,
    base_url,
    forward_url,
    parse_owners,
)
from services.ingest.settings import DEFAULT_EVENTLOG_URL, Settings
from tests.conftest import JWT_SECRET, SECRET_KEYS_TEXT

# --- base URLs --------------------------------------------------------------------


@pytest.mark.parametrize(("text", "url"), [
    ("http://127.0.0.1:8090", "http://127.0.0.1:8090"),
    ("http://127.0.0.1:8090/", "http://127.0.0.1:8090"),
    ("https://eventlog-0.eventlog.hookbus.svc:8090", "https://eventlog-0.eventlog.hookbus.svc:8090"),
    ("http://[::1]:8090", "http://[::1]:8090"),
    ("http://EventLog:80", "http://EventLog:80"),
    ("http://eventlog", "http://eventlog"),
])
def test_base_urls(text: str, url: str) -> None:
    assert base_url(text) == url


@pytest.mark.parametrize("text", [
    "", "127.0.0.1:8090", "ftp://h:1", "file:///etc/passwd", "unix:/run/x.sock",
    "http://", "http://:8090", "http://h:0", "http://h:99999", "http://h:port", "http://h:",
    "http://user:pw@h:1", "http://user@h", "http://h:1/v1", "http://h:1/?x=1", "http://h:1?",
    "http://h:1#f", "http://h:1/#", "http://h 1:2", "http://h\t:1", "http://h\n", "http://hé:1",
    "http://ho_st:1", "http://%41:1", "http://[::1", "http://[zz::1]:1", "http://-h:1",
    "http://" + "a" * 1100,
])
def test_not_base_urls(text: str) -> None:
    with pytest.raises(BadUrl):
        base_url(text)


# --- owner maps -------------------------------------------------------------------


def _map(partitions: object, owners: object, **more: object) -> bytes:
    return json.dumps({"partitions": partitions, "owners": owners} | more).encode()


def test_an_owner_map_names_the_owner_of_each_app() -> None:
    owners = parse_owners(_map(3, {"0": "http://a:1", "2": "http://b:2/"}, version=7))
    assert owners.partitions == 3
    assert dict(owners.owners) == {0: "http://a:1", 2: "http://b:2"}
    for app_id in ("app_1", "app_2", "app_3", "ü", "x" * 255):
        expected = {0: "http://a:1", 2: "http://b:2"}.get(partition_of(app_id, 3))
        assert owners.owner_of(app_id) == expected


def test_an_owner_map_with_every_partition_moving_owns_nothing() -> None:
    assert parse_owners(_map(6, {})).owner_of("app_1") is None


@pytest.mark.parametrize("body", [
    b"", b"null", b"[]", b"{}", b"{", b"\xff\xfe", b'"owners"', b"1e999",
    _map(None, {}), _map("3", {}), _map(3.0, {}), _map(True, {}), _map(3, []),
    _map(3, None), _map(3, {"0": 1}), _map(3, {"0": None}), _map(3, {"0": ["http://a:1"]}),
    _map(0, {}), _map(-1, {}), _map(MAX_PARTITIONS + 1, {}), _map(2**64, {}),
    _map(3, {"3": "http://a:1"}), _map(3, {"-1": "http://a:1"}), _map(3, {"01": "http://a:1"}),
    _map(3, {"+1": "http://a:1"}), _map(3, {" 1": "http://a:1"}), _map(3, {"1.0": "http://a:1"}),
    _map(3, {"¹": "http://a:1"}), _map(3, {"١": "http://a:1"}), _map(3, {"": "http://a:1"}),
    _map(3, {"0" * 30 + "1": "http://a:1"}),
    _map(3, {"0": "file:///etc/passwd"}), _map(3, {"0": "http://a:1/internal"}),
    _map(3, {"0": "http://u:p@a:1"}), _map(3, {"0": ""}), _map(3, {"0": "a:1"}),
    b'{"partitions": 3, "owners": {"0": "http://a:\xff"}}',
    b'{"partitions": 3, "owners": {"\xff": "http://a:1"}}',
    b'{"partitions": 3, "owners": {"0": "http://a:1\\u0000"}}',
    b'{"partitions": 3, "owners": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"deep": ' + b"[" * 100_000 + b"]" * 100_000 + b', "partitions": 1, "owners": {}}',
    b" " * (MAX_OWNERS_BODY + 1),
])
def test_broken_or_hostile_owner_maps_are_refused(body: bytes) -> None:
    with pytest.raises(BadOwners):
        parse_owners(body)


def _containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    _containers, max_leaves=20)


@given(st.binary(max_size=200))
def test_any_bytes_are_a_map_or_bad_owners(body: bytes) -> None:
    try:
        parse_owners(body)
    except BadOwners:
        pass


@given(_JSON, _JSON)
def test_any_json_is_a_map_or_bad_owners(partitions: object, owners: object) -> None:
    try:
        parsed = parse_owners(_map(partitions, owners))
    except BadOwners:
        return
    assert 0 < parsed.partitions <= MAX_PARTITIONS
    assert all(0 <= p < parsed.partitions for p in parsed.owners)


@given(st.integers(1, 64), st.text(min_size=1, max_size=50))
def test_the_owner_is_the_one_of_the_apps_partition(partitions: int, app_id: str) -> None:
    owners = {str(p): f"http://eventlog-{p}:8090" for p in range(partitions)}
    parsed = parse_owners(_map(partitions, owners))
    assert parsed.owner_of(app_id) == f"http://eventlog-{partition_of(app_id, partitions)}:8090"


# --- answers and failures ---------------------------------------------------------


@pytest.mark.parametrize("status", [200, 202, 400, 401, 403, 404, 409, 413, 500])
@pytest.mark.parametrize("retried", [False, True])
def test_answers_are_relayed_as_they_are(status: int, retried: bool) -> None:
    decision = after_answer(status, "application/json", retried=retried)
    assert decision.step == Relay() and not decision.refresh


def test_a_503_is_relayed_and_the_owners_looked_up_again() -> None:
    decision = after_answer(503, "application/json", retried=False)
    assert decision.step == Relay() and decision.refresh


def test_a_421_is_asked_again_once_then_a_503() -> None:
    first = after_answer(421, "application/json", retried=False)
    assert first.step == Retry() and first.refresh
    second = after_answer(421, "application/json", retried=True)
    assert second.step == Refuse(503, MOVING) and second.refresh


@pytest.mark.parametrize(("status", "content_type"), [
    (200, "text/html"), (404, "text/plain"), (500, ""), (502, "application/json"),
    (301, "application/json"), (204, "application/json"), (429, "application/json"),
    (418, "application/json"),
])
def test_answers_the_api_does_not_have_are_a_500(status: int, content_type: str) -> None:
    decision = after_answer(status, content_type, retried=False)
    assert isinstance(decision.step, Refuse) and decision.step.code == 500
    assert str(status) in decision.step.message


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_a_connection_that_never_opened_is_tried_once_more(method: str) -> None:
    first = after_failure("connect", method, retried=False, timeout=10)
    assert first.step == Retry() and first.refresh
    second = after_failure("connect", method, retried=True, timeout=10)
    assert second.step == Refuse(503, MOVING)


def test_a_broken_connection_is_retried_only_when_asking_twice_is_harmless() -> None:
    assert after_failure("lost", "GET", retried=False, timeout=10).step == Retry()
    assert after_failure("lost", "GET", retried=True, timeout=10).step == Refuse(503, MOVING)
    post = after_failure("lost", "POST", retried=False, timeout=10)
    assert isinstance(post.step, Refuse) and post.step.code == 503 and post.refresh
    assert "may have been carried out" in post.step.message


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_timeout_is_not_retried(method: str) -> None:
    decision = after_failure("timeout", method, retried=False, timeout=10)
    assert isinstance(decision.step, Refuse) and decision.step.code == 503
    assert "10 s" in decision.step.message
    assert ("may have been carried out" in decision.step.message) == (method == "POST")


def test_forward_urls_take_absolute_paths_only() -> None:
    assert forward_url("http://a:1", "/v1/apps/x/events?limit=2") == \
        "http://a:1/v1/apps/x/events?limit=2"
    for path in ("v1/apps", "//evil.example/v1", "http://evil.example/v1", ""):
        with pytest.raises(ValueError):
            forward_url("http://a:1", path)


# --- HOOKBUS_EVENTLOG_URLS --------------------------------------------------------

ENV = {"HOOKBUS_JWT_SECRET": JWT_SECRET, "HOOKBUS_SECRET_KEYS": SECRET_KEYS_TEXT}


@pytest.mark.parametrize(("value", "urls"), [
    (None, (DEFAULT_EVENTLOG_URL,)),
    ("", (DEFAULT_EVENTLOG_URL,)),
    ("http://a:8090", ("http://a:8090",)),
    (" http://a:8090/ , https://b:8443,http://a:8090", ("http://a:8090", "https://b:8443")),
])
def test_eventlog_urls_from_the_environment(value: str | None, urls: tuple[str, ...]) -> None:
    env = ENV | ({} if value is None else {"HOOKBUS_EVENTLOG_URLS": value})
    assert Settings.from_env(Env(env)).eventlog_urls == urls


@pytest.mark.parametrize("value", ["a:8090", "http://a:8090/v1", "http://a:8090,ftp://b",
                                   "http://u:p@a:1"])
def test_bad_eventlog_urls_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="HOOKBUS_EVENTLOG_URLS"):
        Settings.from_env(Env(ENV | {"HOOKBUS_EVENTLOG_URLS": value}))
