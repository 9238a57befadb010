"""The console (issue 12) in a real browser: Debian's headless Chromium driven
by Playwright, against the real stack (one for the module), checking what a
person sees. A machine without /usr/bin/chromium fails these tests.

Screenshots of each page, at desktop (1280×800) and phone (390×844) width, go
to a temporary directory, or to $HOOKBUS_CONSOLE_SCREENSHOTS (docs/console to
refresh the README's)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, Request, async_playwright, expect

from devtools.broker import Broker, free_port
from devtools.processes import Stack
from services.common.topics import Topics, ensure_topics
from tests.conftest import PARTITIONS, Receiver, make_stack, token

CHROMIUM = Path("/usr/bin/chromium")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT = 30_000  # ms: the event log files what the deliverer did within seconds


@pytest.fixture(scope="module")
async def console_stack(kafka: Broker, tmp_path_factory: pytest.TempPathFactory
                        ) -> AsyncIterator[Stack]:
    topics = Topics(f"t{uuid.uuid4().hex[:10]}.", retry_delays=(1, 2))
    await ensure_topics(kafka.bootstrap, topics.specs(), partitions=PARTITIONS)
    stack = make_stack(kafka.bootstrap, topics.prefix, tmp_path_factory.mktemp("console"),
                       HOOKBUS_CONSOLE_FRAME_ANCESTORS="'self' http://127.0.0.1:*")
    for name in ("eventlog", "ingest", "router", "deliverer"):
        stack.start(name)
    try:
        await stack.wait_ready()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   chromium_sandbox=False)
        yield browser
        await browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("HOOKBUS_CONSOLE_SCREENSHOTS") or tmp_path)


async def new_page(browser: Browser, errors: list[str]) -> Page:
    page = await (await browser.new_context(viewport=DESKTOP)).new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("dialog", lambda dialog: errors.append(f"a dialog opened: {dialog.message}"))
    return page


async def snap(page: Page, shots: Path, name: str) -> None:
    """The page at desktop, then phone width (the page stays at desktop width)."""
    shots.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=shots / f"{name}-desktop.png")
    await page.set_viewport_size(PHONE)
    await page.wait_for_timeout(150)
    await page.screenshot(path=shots / f"{name}-phone.png", full_page=True)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1, \
        f"{name} scrolls sideways at phone width"
    await page.set_viewport_size(DESKTOP)


async def sign_in(page: Page, stack: Stack, app: str) -> None:
    await page.goto(f"{stack.ingest_url}/console")
    await page.get_by_label("API token").fill(token(app))
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()


async def api(stack: Stack, method: str, path: str, bearer: str, **kwargs: object
              ) -> tuple[int, dict | None]:
    async with aiohttp.ClientSession() as http, http.request(
            method, stack.ingest_url + path, headers={"Authorization": f"Bearer {bearer}"},
            **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body


async def test_webhooks_create_with_chatwoot_names_test_edit_rotate_delete(
        console_stack: Stack, browser: Browser, receiver: Receiver, shots: Path) -> None:
    app = f"app_{uuid.uuid4().hex[:6]}"
    errors: list[str] = []
    page = await new_page(browser, errors)
    await sign_in(page, console_stack, app)

    await page.get_by_role("link", name="New webhook").click()
    await page.get_by_label("Endpoint URL").fill(receiver.url("/hooks"))
    await page.get_by_label("Description").fill("Support inbox")
    await page.get_by_label("Names of").select_option("chatwoot")
    created = page.get_by_role("checkbox", name=re.compile(r"^message_created"))
    await expect(created).to_be_visible()
    # The descriptions come from the event-type table.
    await expect(page.locator(".option", has=created)).to_contain_text("message.received")
    await created.check()
    await page.get_by_role("checkbox", name=re.compile(r"^conversation_created")).check()
    # Deliveries in Chatwoot's shape, so a receiver written for Chatwoot keeps working.
    await page.get_by_label("Payload format").select_option("chatwoot")
    await snap(page, shots, "webhook-form")
    await page.get_by_role("button", name="Create", exact=True).click()

    await expect(page.get_by_role("heading", name="Support inbox", level=1)).to_be_visible()
    await expect(page.locator("dl.facts")).to_contain_text("message_created")
    webhook_id = (await page.locator(".crumbs").inner_text()).split("/")[-1].strip()
    status, webhook = await api(console_stack, "GET", f"/v1/apps/{app}/webhooks/{webhook_id}",
                                token(app))
    assert status == 200 and webhook["triggers"] == ["message_created", "conversation_created"]
    assert webhook["payload_format"] == "chatwoot"
    await expect(page.locator("dl.facts")).to_contain_text("chatwoot")

    # Send a test event and watch its attempt arrive.
    await page.get_by_role("button", name="Send test event", exact=True).click()
    attempts = page.locator("#attempts tbody")
    await expect(attempts).to_contain_text("webhook.test", timeout=WAIT)
    await expect(attempts).to_contain_text("success", timeout=WAIT)
    assert len(receiver.on("/hooks")) == 1
    # webhook.test has no Chatwoot name: Chatwoot's shape with the canonical type.
    assert json.loads(receiver.on("/hooks")[0].body)["event"] == "webhook.test"

    # Reveal the secret, rotate it.
    secret = page.locator("#secret")
    await expect(secret).not_to_contain_text("whsec_")
    await page.get_by_role("button", name="Reveal", exact=True).click()
    await expect(secret).to_have_text(webhook["secret"])
    await snap(page, shots, "webhook-detail")
    await page.get_by_role("button", name="Rotate", exact=True).click()
    await page.get_by_role("dialog").get_by_role("button", name="Rotate", exact=True).click()
    await expect(secret).to_contain_text("whsec_")
    await expect(secret).not_to_have_text(webhook["secret"])
    _, rotated = await api(console_stack, "GET", f"/v1/apps/{app}/webhooks/{webhook_id}",
                           token(app))
    await expect(secret).to_have_text(rotated["secret"])

    # Edit: another description, one more trigger.
    await page.get_by_role("link", name="Edit").click()
    await page.get_by_label("Description").fill("Support inbox (all messages)")
    await page.get_by_label("Names of").select_option("smooch")
    await page.get_by_role("checkbox", name=re.compile(r"^message:appUser")).check()
    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.get_by_role("heading", name="Support inbox (all messages)")).to_be_visible()
    _, edited = await api(console_stack, "GET", f"/v1/apps/{app}/webhooks/{webhook_id}",
                          token(app))
    assert edited["triggers"] == ["message_created", "conversation_created", "message:appUser"]
    assert edited["payload_format"] == "chatwoot"  # kept by an edit that does not change it

    # The list shows its health; a second webhook is deleted after confirming.
    status, other = await api(console_stack, "POST", f"/v1/apps/{app}/webhooks", token(app),
                              json={"target": receiver.url("/other"), "description": "Old CRM"})
    assert status == 201
    await page.get_by_role("navigation").get_by_role("link", name="Webhooks").click()
    rows = page.locator("table tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("100.0%", timeout=WAIT)
    await snap(page, shots, "webhooks")
    await page.get_by_role("link", name=receiver.url("/other")).click()
    await page.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("cannot be undone")
    await dialog.get_by_role("button", name="Cancel", exact=True).click()
    await expect(page.get_by_role("heading", name="Old CRM")).to_be_visible()
    await page.get_by_role("button", name="Delete", exact=True).click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete", exact=True).click()
    await expect(page.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()
    await expect(rows).to_have_count(1)
    status, _ = await api(console_stack, "GET", f"/v1/apps/{app}/webhooks/{other['id']}",
                          token(app))
    assert status == 404
    assert errors == []


async def test_a_failed_event_is_found_resent_and_dead_letters_replayed(
        console_stack: Stack, browser: Browser, receiver: Receiver, shots: Path) -> None:
    app = f"app_{uuid.uuid4().hex[:6]}"
    healthy = {"now": False}

    async def flaky(_: web.Request, n: int) -> web.Response:
        return web.Response(status=204 if healthy["now"] else 500)

    receiver.respond("/flaky", flaky)
    bearer = token(app)
    _, webhook = await api(console_stack, "POST", f"/v1/apps/{app}/webhooks", bearer,
                           json={"target": receiver.url("/flaky"), "triggers": ["*"],
                                 "description": "Flaky CRM"})
    _, good = await api(console_stack, "POST", f"/v1/apps/{app}/webhooks", bearer,
                        json={"target": receiver.url("/good"), "triggers": ["*"]})
    ids = []
    for n in range(2):
        status, published = await api(console_stack, "POST", f"/v1/apps/{app}/events", bearer,
                                      json={"type": "message.received", "data": {"n": n}})
        assert status == 202
        ids.append(published["id"])
    await receiver.wait_count("/flaky", 6)  # 1 + 2 retries each: dead

    errors: list[str] = []
    page = await new_page(browser, errors)
    await sign_in(page, console_stack, app)
    await page.get_by_role("navigation").get_by_role("link", name="Events").click()
    await page.get_by_label("Status").select_option("dead")
    await page.get_by_role("button", name="Filter", exact=True).click()
    listed = page.locator("#events tbody")
    for event_id in ids:
        await expect(listed).to_contain_text(event_id, timeout=WAIT)
    await expect(listed).to_contain_text("1 dead")
    await snap(page, shots, "events")

    # Live: a new event shows up without reloading.
    await page.get_by_label("Status").select_option("")
    await page.get_by_role("button", name="Filter", exact=True).click()
    _, newest = await api(console_stack, "POST", f"/v1/apps/{app}/events", bearer,
                          json={"type": "conversation.created", "data": {}})
    await expect(listed.locator("tr.fresh")).to_contain_text(newest["id"], timeout=WAIT)

    # The failed event's page: its payload, each webhook's timeline; Resend.
    await page.get_by_role("link", name=ids[0]).click()
    await expect(page.get_by_role("heading", name="message.received")).to_be_visible()
    await expect(page.locator("pre.payload")).to_contain_text('"n": 0')
    flaky_delivery = page.locator("section.delivery", has_text=webhook["id"])
    await expect(flaky_delivery).to_contain_text("dead")
    await expect(flaky_delivery.locator("ol.timeline li")).to_have_count(4)  # 3 tries, 1 dead
    await expect(page.locator("section.delivery", has_text=good["id"])).to_contain_text(
        "delivered")
    await snap(page, shots, "event")
    healthy["now"] = True
    await page.get_by_role("button", name=f"Resend to {webhook['id']}", exact=True).click()
    await expect(flaky_delivery).to_contain_text("delivered", timeout=WAIT)
    await expect(flaky_delivery.locator("ol.timeline")).to_contain_text("resend")

    # Dead letters: the other one is still there; Replay, and watch its progress.
    await page.get_by_role("navigation").get_by_role("link", name="Dead letters").click()
    section = page.locator("section", has_text="Flaky CRM").or_(
        page.locator("section.card", has_text=receiver.url("/flaky")))
    await expect(section.locator(".dead-count")).to_have_text("1", timeout=WAIT)
    await expect(section.locator("tbody")).to_contain_text(ids[1])
    await section.get_by_role("button", name="Replay dead letters", exact=True).click()
    await expect(section.locator(".job")).to_contain_text("done", timeout=WAIT)
    await expect(section.locator(".job")).to_contain_text(re.compile(r"\b[1-9]\d* replayed"))
    await snap(page, shots, "dead-letters")
    await receiver.wait_for("/flaky", ids[1])
    async def delivered_again() -> bool:
        return len([r for r in receiver.on("/flaky") if r.headers["webhook-id"] == ids[1]]) >= 4
    for _ in range(100):
        if await delivered_again():
            break
        await asyncio.sleep(0.2)
    assert await delivered_again()

    # Health: charts of its success rate and latency.
    await page.get_by_role("navigation").get_by_role("link", name="Health").click()
    card = page.locator("section.card", has_text=receiver.url("/flaky"))
    await expect(card.locator("svg[role=img]").first).to_have_attribute(
        "aria-label", re.compile(r"Success rate: Last hour \d"))
    await expect(card.locator("svg[role=img]")).to_have_count(3)
    await snap(page, shots, "health")
    assert errors == []


async def test_customer_strings_are_shown_as_text_never_run(
        console_stack: Stack, browser: Browser, receiver: Receiver) -> None:
    app = f"app_{uuid.uuid4().hex[:6]}"
    bearer = token(app)
    attack = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    _, webhook = await api(console_stack, "POST", f"/v1/apps/{app}/webhooks", bearer,
                           json={"target": receiver.url("/x?q=<b>"), "triggers": ["*"],
                                 "description": attack})
    _, event = await api(console_stack, "POST", f"/v1/apps/{app}/events", bearer,
                         json={"type": "message.received", "data": {"text": attack}})
    await receiver.wait_for("/x", event["id"])
    errors: list[str] = []
    page = await new_page(browser, errors)
    await sign_in(page, console_stack, app)
    await expect(page.locator("table")).to_contain_text(attack)
    await page.get_by_role("link", name=receiver.url("/x?q=<b>")).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(attack)
    await page.goto(f"{console_stack.ingest_url}/console#/events/{event['id']}")
    await expect(page.locator("pre.payload")).to_contain_text(attack.replace('"', '\\"'),
                                                              timeout=WAIT)
    assert await page.evaluate("window.__xss") is None
    assert await page.locator("img[src=x], main script").count() == 0
    assert errors == []
    del webhook


async def test_portal_link_in_an_iframe_read_only_and_themed(
        console_stack: Stack, browser: Browser, receiver: Receiver, shots: Path) -> None:
    app = f"app_{uuid.uuid4().hex[:6]}"
    admin = token(scope="admin")
    await api(console_stack, "POST", f"/v1/apps/{app}/webhooks", token(app),
              json={"target": receiver.url("/portal"), "description": "Embedded one"})
    platform = web.Application()
    logo = ('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="24">'
            '<rect width="64" height="24" fill="#7c3aed"/></svg>')
    framed: dict[str, str] = {}

    async def logo_file(_: web.Request) -> web.Response:
        return web.Response(text=logo, content_type="image/svg+xml")

    async def dashboard(_: web.Request) -> web.Response:
        return web.Response(content_type="text/html", text=(
            '<!doctype html><title>Platform</title><link rel="icon" href="data:,">'
            '<h1>ACME dashboard</h1><iframe title="Webhooks" src="' + framed["url"]
            + '" style="width:100%;height:640px;border:1px solid #ccc"></iframe>'))

    platform.router.add_get("/logo.svg", logo_file)
    platform.router.add_get("/", dashboard)
    runner = web.AppRunner(platform)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        # Only an admin makes links; the theme is checked.
        status, _ = await api(console_stack, "POST", f"/v1/apps/{app}/portal-links", token(app))
        assert status == 403
        status, bad = await api(console_stack, "POST", f"/v1/apps/{app}/portal-links", admin,
                                json={"theme": {"accent": "red;x", "logo_url": "javascript:1"}})
        assert status == 400 and {d["field"] for d in bad["error"]["details"]} >= {"theme.accent"}
        status, link = await api(console_stack, "POST", f"/v1/apps/{app}/portal-links", admin,
                                 json={"read_only": True, "expires_in": 900, "theme": {
                                     "accent": "#7c3aed",
                                     "logo_url": f"http://127.0.0.1:{port}/logo.svg"}})
        assert status == 201 and "#token=" in link["url"], link
        portal_token = link["url"].split("#token=")[1]
        # A read-only token cannot write.
        status, refused = await api(console_stack, "POST", f"/v1/apps/{app}/webhooks",
                                    portal_token, json={"target": receiver.url("/no")})
        assert status == 403 and "read-only" in refused["error"]["message"]

        framed["url"] = link["url"]
        errors: list[str] = []
        page = await new_page(browser, errors)
        await page.goto(f"http://127.0.0.1:{port}/")
        frame = page.frame_locator("iframe")
        await expect(frame.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()
        await expect(frame.locator("table")).to_contain_text("Embedded one")
        await expect(frame.get_by_text("read-only")).to_be_visible()
        await expect(frame.get_by_role("link", name="New webhook")).to_have_count(0)
        await expect(frame.locator("#logo")).to_be_visible()
        inner = page.frames[1]
        assert "token=" not in inner.url, inner.url  # moved to sessionStorage, stripped
        assert await inner.evaluate(
            "getComputedStyle(document.querySelector('.bar')).borderBottomColor") \
            == "rgb(124, 58, 237)"
        await snap(page, shots, "portal-iframe")
        assert errors == []
        log = "".join(s.log() for s in console_stack.services.values())
        assert portal_token not in log

        # The operator's view (admin token, pasted).
        page = await new_page(browser, errors)
        await page.goto(f"{console_stack.ingest_url}/console")
        await page.get_by_label("API token").fill(admin)
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page.get_by_role("heading", name="Operator")).to_be_visible()
        await expect(page.locator("table").first).to_contain_text(app)
        await expect(page.locator("#dead-total")).to_be_visible(timeout=WAIT)
        await snap(page, shots, "operator")
        assert errors == []
    finally:
        await runner.cleanup()


async def test_console_headers(console_stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/console", "/console/static/app.js",
                     "/console?logo=https://cdn.example/l.png"):
            async with http.get(console_stack.ingest_url + path) as response:
                assert response.status == 200
                policy = response.headers["Content-Security-Policy"]
                assert "script-src 'self';" in policy and "unsafe" not in policy
                assert "frame-ancestors 'self' http://127.0.0.1:*" in policy
                assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "img-src 'self' data: https://cdn.example;" in policy
        async with http.get(console_stack.ingest_url + "/console?logo=javascript:alert(1)") as r:
            assert "img-src 'self' data:;" in r.headers["Content-Security-Policy"]
        async with http.get(console_stack.ingest_url + "/console/static/..%2fapp.py") as r:
            assert r.status == 404


async def test_attacks_on_the_console(console_stack: Stack, browser: Browser,
                                      receiver: Receiver) -> None:
    """A hostile reviewer's findings, one stack and one browser: a portal link
    swapped in the same page, the skip link, a logo the CSP refuses, a failing
    click, the operator's requests per app, hostile app and event ids."""
    base = console_stack.ingest_url
    admin = token(scope="admin")
    first, second = (f"app_{uuid.uuid4().hex[:6]}" for _ in range(2))
    for app in (first, second):
        await api(console_stack, "POST", f"/v1/apps/{app}/webhooks", token(app),
                  json={"target": receiver.url(f"/{app}"), "description": f"Hook of {app}"})
    links = []
    for app in (first, second):
        status, link = await api(console_stack, "POST", f"/v1/apps/{app}/portal-links", admin,
                                 json={"expires_in": 900})
        assert status == 201
        links.append(link["url"])
    errors: list[str] = []
    page = await new_page(browser, errors)

    # A second link that differs only in its fragment (a platform swapping the
    # iframe's link) loads no page: its token must still replace the first.
    await page.goto(links[0])
    await expect(page.get_by_text(f"Hook of {first}")).to_be_visible()
    await page.goto(links[1])
    await expect(page.get_by_text(f"Hook of {second}")).to_be_visible()
    assert "token=" not in page.url, page.url

    # The skip link moves the focus, not the route: a reload shows the same page.
    await page.locator("a.skip").focus()
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    assert page.url.endswith("#/webhooks"), page.url
    await page.reload()
    await expect(page.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()

    # A logo the server's CSP refuses (user info) is not requested, nor shown broken.
    await page.goto(f"{base}/console?logo=https://u@127.0.0.1:9/l.svg#/webhooks")
    await expect(page.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()
    await expect(page.locator("#logo")).to_be_hidden()
    assert errors == []

    # A click whose API call fails says so (the webhook was deleted meanwhile).
    _, listed = await api(console_stack, "GET", f"/v1/apps/{second}/webhooks", token(second))
    hook = listed["webhooks"][0]["id"]
    await page.goto(f"{base}/console#/webhooks/{hook}")
    await expect(page.get_by_role("button", name="Send test event")).to_be_enabled()
    await api(console_stack, "DELETE", f"/v1/apps/{second}/webhooks/{hook}", token(second))
    await page.get_by_role("button", name="Send test event").click()
    await expect(page.locator("#status")).to_contain_text("404")
    await page.close()  # its attempts, polled, are 404s now
    errors.clear()

    # The operator's view: an app id and an event id that are markup, and as
    # many apps as an installation has: a few requests at a time, none after leaving.
    hostile_app = "<img src=x onerror=__xss=3>"
    hostile_event = "<svg onload=__xss=4>"
    await api(console_stack, "POST", f"/v1/apps/{hostile_app}/webhooks", token(hostile_app),
              json={"target": receiver.url("/hostile"), "triggers": ["*"]})
    status, _ = await api(console_stack, "POST", f"/v1/apps/{hostile_app}/events",
                          token(hostile_app), json={"type": "message.received",
                                                    "id": hostile_event, "data": {}})
    assert status == 202
    await receiver.wait_for("/hostile", hostile_event)
    many = [f"app_{uuid.uuid4().hex[:6]}" for _ in range(24)]
    await asyncio.gather(*(api(console_stack, "POST", f"/v1/apps/{app}/webhooks", token(app),
                                json={"target": receiver.url("/many")}) for app in many))
    running = {"now": 0, "most": 0}

    def began(request: Request) -> None:
        if "/v1/apps/" in request.url:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])

    def ended(request: Request) -> None:
        if "/v1/apps/" in request.url:
            running["now"] -= 1

    page = await new_page(browser, errors)
    page.on("request", began)
    page.on("requestfinished", ended)
    page.on("requestfailed", ended)
    await page.goto(f"{base}/console")
    await page.get_by_label("API token").fill(admin)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("table").first).to_contain_text(hostile_app)
    await expect(page.locator("#dead-total")).to_be_visible(timeout=WAIT)
    await page.get_by_label("Event id").fill(hostile_event)
    await page.get_by_role("button", name="Find", exact=True).click()
    hit = page.locator("#lookup-result")
    await expect(hit).to_contain_text(hostile_app, timeout=WAIT)
    assert running["most"] <= 6, f"{running['most']} requests at once"
    errors.clear()  # the other apps' 404s: the lookup asks each app
    await hit.get_by_role("button", name="Open").click()
    await expect(page.locator("dl.facts")).to_contain_text(hostile_event)
    await page.evaluate("location.hash = '#/operator'")
    await expect(page.get_by_role("heading", name="Operator")).to_be_visible()
    left = await page.evaluate("""() => {
        performance.clearResourceTimings();
        const now = performance.now();
        location.hash = '#/health';
        return now;
    }""")
    await expect(page.get_by_role("heading", name="Health")).to_be_visible()
    await page.wait_for_timeout(1500)
    urls = await page.evaluate("""(left) => performance.getEntriesByType('resource')
        .filter((e) => e.startTime > left).map((e) => e.name)""", left)
    scans = [url for url in urls if any(f"/v1/apps/{app}/" in url for app in many)]
    assert len(scans) <= 6, f"the operator's scan went on after leaving: {len(scans)} requests"
    assert await page.evaluate("window.__xss") is None
    assert await page.locator("img[src=x], svg[onload]").count() == 0
    assert errors == []
