"""The UI against a real three-node cluster, in headless Chromium: what a user does and sees.

Writes go through whichever member serves the page (a follower forwards them); "within two
seconds" is asserted with Playwright's expectations, which poll the page until their deadline.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from tests.cluster_harness import LocalCluster
from tests.processes import KonsulProcess, http, wait_until
from tests.ui.conftest import api, ui_url

LIVE = 2000  # ms: the bar for the UI following a change made elsewhere


def kv(key: str) -> str:
    return "/kv/" + quote(key, safe="/")


def test_a_key_created_in_the_ui_is_in_the_api(cluster: LocalCluster, page: Any) -> None:
    follower = cluster.followers()[0]  # its UI's write is forwarded to the leader

    def create(key: str, value: str) -> None:
        page.goto(ui_url(follower, "#/keys/created/"))
        page.click("#new-key")
        page.fill("#new-key-name", key)
        page.fill("#new-key-value", value)
        page.click("#create-key")

    create("created/by-the-ui", "hello from a browser")
    expect(page.locator("#key-value")).to_have_text("hello from a browser")
    entry = api(cluster.leader(), "GET", kv("created/by-the-ui") + "?consistent")
    assert entry["value"] == "hello from a browser"
    create("created/by-the-ui", "would overwrite")  # create-only: refused, and it says so
    expect(page.locator("#create-error")).to_contain_text("already exists")
    assert api(cluster.leader(), "GET", kv("created/by-the-ui"))["value"] == "hello from a browser"


def test_the_ui_follows_a_change_made_through_the_api(
    cluster: LocalCluster, page: Any
) -> None:
    leader = cluster.leader()
    api(leader, "PUT", kv("follow/config"), {"value": '{"replicas": 1}'})
    page.goto(ui_url(cluster.followers()[0], "#/key/follow/config"))
    expect(page.locator("#key-value")).to_have_text('{\n  "replicas": 1\n}')  # pretty JSON
    api(leader, "PUT", kv("follow/config"), {"value": '{"replicas": 3}'})
    expect(page.locator("#key-value")).to_have_text('{\n  "replicas": 3\n}', timeout=LIVE)
    api(leader, "PUT", kv("follow/other"), {"value": "new"})  # the folder listing follows too
    expect(page.locator("#tree")).to_contain_text("other", timeout=LIVE)
    api(leader, "DELETE", kv("follow/config"))
    expect(page.locator("#key-notices")).to_contain_text("deleted", timeout=LIVE)


def test_an_edit_of_a_stale_value_is_refused(cluster: LocalCluster, page: Any) -> None:
    leader = cluster.leader()
    api(leader, "PUT", kv("stale/setting"), {"value": "original"})
    page.goto(ui_url(leader, "#/key/stale/setting"))
    expect(page.locator("#key-value")).to_have_text("original")
    page.click("#edit-key")
    api(leader, "PUT", kv("stale/setting"), {"value": "someone else's"})
    expect(page.locator("#key-notices")).to_contain_text("saving will be refused", timeout=LIVE)
    page.fill("#edit-value", "mine")
    page.click("#save-key")
    expect(page.locator("#key-notices")).to_contain_text("Not saved")
    expect(page.locator("#key-notices")).to_contain_text("someone else changed this key")
    assert api(leader, "GET", kv("stale/setting"))["value"] == "someone else's"
    # Reloading shows the current value; an edit of that one is saved.
    page.click("#reload-key")
    expect(page.locator("#key-value")).to_have_text("someone else's")
    page.click("#edit-key")
    page.fill("#edit-value", "mine, on top of theirs")
    page.click("#save-key")
    expect(page.locator("#key-value")).to_have_text("mine, on top of theirs")
    assert api(leader, "GET", kv("stale/setting"))["value"] == "mine, on top of theirs"


def test_deleting_a_folder_says_how_many_keys_go(cluster: LocalCluster, page: Any) -> None:
    leader = cluster.leader()
    for name in ("a", "b", "deeper/c"):
        api(leader, "PUT", kv(f"doomed/{name}"), {"value": name})
    api(leader, "PUT", kv("doomed-not/kept"), {"value": "stays"})  # same text, other folder
    page.goto(ui_url(leader, "#/keys/doomed/"))
    page.click("#delete-prefix")
    dialog = page.locator("#confirm-delete-prefix")
    expect(dialog).to_contain_text("Delete 3 keys under doomed/")
    page.click("#confirm-delete")
    expect(page.locator("#banner")).to_contain_text("Deleted 3 keys.")
    assert api(leader, "GET", "/kv/?prefix=doomed/&keys") == []
    assert api(leader, "GET", kv("doomed-not/kept"))["value"] == "stays"


def test_a_check_turning_critical_shows_within_two_seconds(
    cluster: LocalCluster, page: Any
) -> None:
    leader = cluster.leader()
    for n, tags in ((1, ["blue"]), (2, ["green"])):
        api(leader, "PUT", "/register", {
            "name": "billing", "id": f"billing-{n}", "address": "127.0.0.1", "port": 9000 + n,
            "tags": tags, "checks": [{"id": f"billing-{n}-ttl", "ttl": "5m"}],
        })
        api(leader, "PUT", f"/health/check/billing-{n}-ttl", {"status": "passing", "output": "ok"})
    page.goto(ui_url(cluster.followers()[0], "#/services"))
    row = page.locator('tr[data-service="billing"]')
    expect(row.locator('[data-status="passing"]')).to_have_text("2")
    expect(row.locator('[data-status="critical"]')).to_have_text("0")

    api(leader, "PUT", "/health/check/billing-2-ttl",
        {"status": "critical", "output": "connection refused on 127.0.0.1:9002"})
    changed = time.monotonic()
    expect(row.locator('[data-status="critical"]')).to_have_text("1", timeout=LIVE)
    assert time.monotonic() - changed < LIVE / 1000

    # Filters: by status, then by tag; the instance shows its check and its output.
    page.select_option("#filter-status", "critical")
    expect(row.locator("td").nth(1)).to_have_text("1")
    page.select_option("#filter-status", "")
    page.select_option("#filter-tag", "blue")
    expect(row.locator('[data-status="passing"]')).to_have_text("1")
    expect(row.locator('[data-status="critical"]')).to_have_text("0")
    page.select_option("#filter-tag", "")
    row.locator("a").click()
    check = page.locator('tr[data-check="billing-2-ttl"]')
    expect(check).to_contain_text("critical")
    expect(check).to_contain_text("connection refused on 127.0.0.1:9002")
    api(leader, "PUT", "/health/check/billing-2-ttl", {"status": "warning", "output": "slow"})
    expect(check).to_contain_text("warning", timeout=LIVE)


def test_the_cluster_page_shows_a_new_leader(cluster: LocalCluster, page: Any) -> None:
    old = cluster.leader()
    watcher = cluster.followers()[0]
    target = next(n for n in cluster.running() if n is not old and n is not watcher)
    page.goto(ui_url(watcher))
    expect(page.locator("#leader strong")).to_have_text(old.node_id)
    expect(page.locator("#members tbody tr")).to_have_count(3)
    expect(page.locator(f'tr[data-member="{target.node_id}"]')).to_contain_text("healthy")

    api(old, "POST", "/cluster/transfer-leadership", {"node_id": target.node_id})
    moved = time.monotonic()
    expect(page.locator("#leader strong")).to_have_text(target.node_id, timeout=LIVE)
    expect(page.locator("tr.leader")).to_have_attribute("data-member", target.node_id)
    assert time.monotonic() - moved < LIVE / 1000
    row = page.locator(f'tr[data-member="{old.node_id}"]')
    expect(row).to_contain_text("Follower")
    expect(row).to_contain_text("voter")
    cluster.wait_converged()


HOSTILE = [
    "<script>window.__pwned = 1</script>",
    '"><img src=x onerror="window.__pwned = 2">',
    "' onmouseover='window.__pwned = 3",
    "ünïcödé ✓ 日本語 🚀 \u202eevil\u202c",
    "{{constructor.constructor('window.__pwned = 4')()}}",
]


def test_a_value_that_is_not_text_shows_as_hex(cluster: LocalCluster, page: Any) -> None:
    """Values are bytes: one that is not UTF-8 comes as value_base64 and shows byte for byte."""
    leader = cluster.leader()
    api(leader, "PUT", kv("bytes/blob"), {"value_base64": "AP+AYmluYXJ5"})  # 00 ff 80 "binary"
    page.goto(ui_url(leader, "#/key/bytes/blob"))
    expect(page.locator("#key-value")).to_contain_text("00 ff 80 62 69 6e 61 72 79")
    expect(page.locator("#key-name")).to_have_text("bytes/blob")
    expect(page.locator(".meta")).to_contain_text("9 bytes")


def test_hostile_strings_render_as_text(cluster: LocalCluster, page: Any) -> None:
    leader = cluster.leader()
    long_value = "<b>x</b>" * 20_000  # 160 kB
    for n, text in enumerate(HOSTILE):
        api(leader, "PUT", kv(f"hostile/{n}/{text}"), {"value": text})
    api(leader, "PUT", kv("hostile/long/" + "k" * 400), {"value": long_value})
    api(leader, "PUT", "/register", {
        "name": "<img src=x onerror=window.__pwned=5>", "id": "hostile-1",
        "address": "127.0.0.1", "port": 1, "tags": ["<script>t</script>", '"quoted"'],
        "meta": {"note": "<svg onload=window.__pwned=6>"},
        "checks": [{"id": "hostile-ttl", "name": "<i>check</i>", "ttl": "5m"}],
    })
    api(leader, "PUT", "/health/check/hostile-ttl",
        {"status": "critical", "output": "<script>window.__pwned = 7</script>"})

    # One document throughout (the address changes only after '#'), so whatever a string
    # could have run on any of these pages would still be visible at the end.
    page.goto(ui_url(leader, "#/keys/hostile/"))
    show = "(fragment) => { location.hash = fragment; }"
    for n, text in enumerate(HOSTILE):
        key = f"hostile/{n}/{text}"
        page.evaluate(show, "#/key/" + quote(key, safe="/"))
        expect(page.locator("#key-name")).to_have_text(key)
        expect(page.locator("#key-value")).to_have_text(text)
        # The listing beside it is of the key's folder: the name after its last "/".
        expect(page.locator("#tree")).to_contain_text(text.split("/")[-1])
    page.evaluate(show, "#/key/hostile/long/" + "k" * 400)
    expect(page.locator("#key-value")).to_have_text(long_value)
    page.evaluate(show, "#/services/" + quote("<img src=x onerror=window.__pwned=5>"))
    instance = page.locator('[data-instance="hostile-1"]')
    expect(instance).to_contain_text("<script>t</script>")
    expect(instance).to_contain_text("note=<svg onload=window.__pwned=6>")
    expect(instance).to_contain_text("<i>check</i>")
    expect(instance).to_contain_text("<script>window.__pwned = 7</script>")
    page.evaluate(show, "#/services")
    expect(page.locator("#services")).to_contain_text("<img src=x onerror=window.__pwned=5>")

    assert page.evaluate("window.__pwned") is None
    # Nothing from the data became markup: the only images are the page's own logo.
    assert page.evaluate("[...document.images].map(i => i.getAttribute('src'))") == [
        "favicon.svg"
    ]
    assert page.locator("main script, main svg, main i, main b").count() == 0


class _AttackerPage(BaseHTTPRequestHandler):
    """A page of another origin that posts a form to the node as soon as it loads."""

    target = ""

    def do_GET(self) -> None:
        body = (
            "<!doctype html><form id=f method=POST enctype=text/plain "
            f'action="{self.target}/kv/csrf/planted">'
            '<input name=\'{"value": "x\' value=\'"}\'></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def attacker(cluster: LocalCluster) -> Iterator[str]:
    handler = type("Attack", (_AttackerPage,), {"target": cluster.leader().url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_form_on_another_site_cannot_write(
    cluster: LocalCluster, page: Any, attacker: str
) -> None:
    """The classic forgery: a text/plain form whose body happens to be JSON."""
    leader = cluster.leader()
    with page.expect_response(lambda r: "/kv/csrf/planted" in r.url) as posted:
        page.goto(attacker)
    assert posted.value.status == 403
    assert posted.value.json()["error"] == "cross-site request"
    code, _, _ = http("GET", leader.url + kv("csrf/planted"))
    assert code == 404
    # Without the browser's marks, the same body from curl is a write, as ever.
    wait_until(lambda: http("POST", leader.url + kv("csrf/curl"), {"value": "x"})[0] == 200, 5,
               "a plain POST to be accepted")


# ------------------------------------------------------------------------------- ACLs on

MANAGEMENT = "management-secret-for-the-ui-test"
TEAM_A = "team-a-secret-for-the-ui-test"


def call(node: KonsulProcess, method: str, path: str, body: Any = None,
         token: str = MANAGEMENT) -> Any:
    request = urllib.request.Request(
        node.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"X-Konsul-Token": token, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KonsulProcess]:
    """A node with ACLs on (deny by default) holding two teams' keys and services, and a token
    that may write team-a's keys and read the web service, nothing else."""
    node = KonsulProcess(tmp_path_factory.mktemp("acl") / "node", env={
        "KONSUL_ACL_ENABLED": "true", "KONSUL_ACL_INITIAL_MANAGEMENT_TOKEN": MANAGEMENT,
    }).start()
    try:
        wait_until(lambda: _management_works(node), 20, "the management token to exist")
        call(node, "POST", "/acl/policy", {"name": "team-a", "rules": {
            "key_prefix": {"team-a/": "write"}, "service_prefix": {"web": "read"}}})
        call(node, "POST", "/acl/token", {"secret_id": TEAM_A, "policies": [{"name": "team-a"}]})
        for key in ("team-a/config", "team-a/flags", "team-b/secret"):
            call(node, "PUT", kv(key), {"value": f"value of {key}"})
        for name in ("web", "payroll"):
            call(node, "PUT", "/register", {"name": name, "address": "127.0.0.1", "port": 1})
        yield node
    finally:
        node.kill()


def _management_works(node: KonsulProcess) -> bool:
    try:
        call(node, "GET", "/acl/token/self")
    except urllib.error.HTTPError:
        return False
    return True


def test_with_acls_the_ui_shows_only_what_the_token_may_see(
    secured: KonsulProcess, page: Any
) -> None:
    page.goto(f"{secured.url}/ui/#/keys/")
    expect(page.locator("#tree")).to_contain_text("no keys here")  # anonymous: nothing
    page.goto(f"{secured.url}/ui/#/cluster")
    expect(page.locator("#banner")).to_contain_text("Access denied (403)")
    expect(page.locator("#banner")).to_contain_text("No ACL token is set")

    page.fill("#token", TEAM_A)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#token-state")).to_contain_text("token set")
    # Kept for this tab's session only: never in local storage, a cookie or an address.
    assert page.evaluate("sessionStorage.getItem('konsul.token')") == TEAM_A
    assert page.evaluate("localStorage.length") == 0
    assert page.context.cookies() == []
    expect(page.locator("#banner")).to_contain_text("lacks operator:read")
    expect(page.locator("#banner")).to_contain_text("The ACL token in use does not allow this")

    page.evaluate("location.hash = '#/keys/'")
    expect(page.locator("#tree")).to_contain_text("team-a/")
    expect(page.locator("#tree")).not_to_contain_text("team-b")
    page.evaluate("location.hash = '#/services'")
    expect(page.locator('tr[data-service="web"]')).to_be_visible()
    expect(page.locator("#services")).not_to_contain_text("payroll")

    # Reading is not writing: a key of another team is refused, and the page says why.
    page.evaluate("location.hash = '#/keys/team-b/'")
    page.click("#new-key")
    page.fill("#new-key-name", "team-b/planted")
    page.fill("#new-key-value", "x")
    page.click("#create-key")
    expect(page.locator("#create-error")).to_contain_text("lacks key:write on 'team-b/planted'")
    # Its own team's keys it may write.
    page.evaluate("location.hash = '#/key/team-a/config'")
    page.click("#edit-key")
    page.fill("#edit-value", "changed in the UI")
    page.click("#save-key")
    expect(page.locator("#key-value")).to_have_text("changed in the UI")
    assert call(secured, "GET", kv("team-a/config"))["value"] == "changed in the UI"
    with pytest.raises(urllib.error.HTTPError):
        call(secured, "GET", kv("team-b/planted"))
