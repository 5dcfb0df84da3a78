# This file is part of epo_zooniverse.
#
# Developed for the LSST Data Management System.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.

"""The operators' review page of the web application in Debian's headless
Chromium (Playwright, ``executable_path``): the batch list across projects
with stretch settings and the already-public warning, filtering, a batch
page whose pictures all load, a bulk approval across projects and
publication by clicking, escaped text, form tokens and cross-origin posts
refused.  Screenshots go to ``tests/.output/web_review_*.png``.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from web_test_utils import OUTPUT_DIR, WebSite, Worker, free_port, make_repo, write_config


def find_chromium():
    candidates = [os.environ.get("EPO_ZOONIVERSE_CHROMIUM")]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")]
    candidates.append("/usr/bin/chromium")
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("web_review")
    repo = make_repo(root / "repo")
    port = free_port()
    config = write_config(root / "epo", port=port)
    worker = Worker(config)
    site = WebSite(config, str(root / "server.log"), port=port)
    tokens = {user: worker.token(user, "pi") for user in ("alice", "bob")}
    tokens["eve"] = worker.token("eve", "operator")
    try:
        for user, name in (("alice", "galaxies"), ("bob", "bobs")):
            body = {
                "name": name,
                "zooniverse_project_id": 5,
                "repo": repo.root,
                "collections": f"u/{user}/zoo/*",
            }
            assert site.client(tokens[user]).post("/v1/projects", json=body).status_code == 201
        worker.cycle()
        eve = site.client(tokens["eve"])
        batches = eve.get("/v1/operator/batches", params={"project": "galaxies"}).json()["batches"]
        by_patch = {}
        for batch in batches:
            by_patch.setdefault(batch["data_id"]["patch"], []).append(batch["batch"])
        first, again = by_patch[0]
        r = eve.post("/v1/operator/decisions", json={"decision": "approve", "batches": [first]})
        assert r.json()["results"][0]["ok"]
        assert eve.post("/v1/operator/publish", json={}).json()["published"] == 3
        yield {"site": site, "tokens": tokens, "again": again, "other": by_patch[1][0], "worker": worker}
    finally:
        site.close()
        worker.close()


def test_forms_need_the_token_and_the_same_origin(world):
    site = world["site"]
    eve = site.client(world["tokens"]["eve"])
    page = eve.get("/review/")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
    form = {"decision": "approve", "batch": world["other"]}
    assert eve.post("/review/decide", data=form).status_code == 403
    assert eve.post("/review/decide", data=dict(form, csrf="0" * 64)).status_code == 403
    r = eve.post("/review/decide", data=dict(form, csrf=csrf), headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = eve.post("/review/decide", data=dict(form, csrf=csrf), headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    # Another operator's form token is not Eve's.
    mallory = site.client(world["worker"].token("mallory", "operator"))
    assert mallory.post("/review/decide", data=dict(form, csrf=csrf)).status_code == 403
    states = {
        b["batch"]: b["state"]
        for b in eve.get("/v1/operator/batches", params={"state": "all"}).json()["batches"]
    }
    assert states[world["other"]] == "quarantined"
    assert site.client(world["tokens"]["alice"]).get("/review/").status_code == 403


def test_review_page_in_chromium(world, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(
            "no Chromium binary (bash scripts/setup_env.sh --test-tools, or set EPO_ZOONIVERSE_CHROMIUM)"
        )
    from playwright.sync_api import sync_playwright

    site = world["site"]
    review = site.api + "/review/"
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(20_000)
            # Log in: a PI's token is refused, an operator's kept in a
            # cookie for the page only.
            page.goto(review)
            assert page.url == review + "login"
            page.fill("#token", world["tokens"]["alice"])
            page.click("#login")
            assert "Unknown, expired or revoked operator token." in page.inner_text("#message")
            page.fill("#token", world["tokens"]["eve"])
            page.click("#login")
            page.wait_for_url(review)
            (cookie,) = context.cookies()
            assert (
                cookie["httpOnly"]
                and cookie["sameSite"] == "Strict"
                and cookie["path"] == "/epo-zooniverse/review/"
            )
            errors = []
            # Every response the page asks for succeeds (the browser's own
            # favicon request aside).
            page.on(
                "response",
                lambda r: (
                    errors.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico")
                    else None
                ),
            )
            page.goto(review)
            rows = page.locator("tr.batch")
            assert rows.count() == 3  # Alice's two waiting batches and Bob's
            again = page.locator(f"tr.batch[data-batch='{world['again']}']")
            assert "3 objects already public" in again.inner_text()
            assert page.locator(f"tr.batch[data-batch='{world['other']}'] .warning").count() == 0
            assert "stretch" in again.locator("td.stretch").inner_text()
            page.screenshot(path=str(tmp_path / "list.png"), full_page=True)
            shutil.copy(tmp_path / "list.png", os.path.join(OUTPUT_DIR, "web_review_list.png"))
            # Filter by project.
            page.select_option("select[name=project]", "galaxies")
            page.click("form.filters button")
            page.wait_for_url(re.compile(r".*project=galaxies.*"))
            assert page.locator("tr.batch").count() == 2
            # A batch page: every picture loads and carries the warning.
            page.click(f"a:text-is('{world['again']}')")
            page.wait_for_url(re.compile(rf".*/review/batches/{re.escape(world['again'])}$"))
            page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
            widths = page.eval_on_selector_all("figure.image img", "imgs => imgs.map(i => i.naturalWidth)")
            assert len(widths) == 3 and all(w > 0 for w in widths), widths
            assert page.locator("figure.public").count() == 3
            assert "already public from another batch" in page.inner_text("main")
            page.screenshot(path=str(tmp_path / "batch.png"), full_page=True)
            shutil.copy(tmp_path / "batch.png", os.path.join(OUTPUT_DIR, "web_review_page.png"))
            # Reject it, with a reason that must come back as text.
            page.fill("input[name=reason]", "<b>duplicate</b> & co")
            page.click("#reject")
            page.wait_for_url(re.compile(r".*/review/\?message=.*"))
            assert page.inner_text("#message") == "3 images rejected."
            # Bulk approval across projects, then publication.
            page.goto(review)
            assert page.locator("tr.batch").count() == 2
            page.check(f"input[name=batch][value='{world['other']}']")
            bob_batch = page.locator("tr.batch", has_text="bobs (bob)").get_attribute("data-batch")
            page.check(f"input[name=batch][value='{bob_batch}']")
            page.click("#approve")
            page.wait_for_url(re.compile(r".*message=.*"))
            assert page.inner_text("#message") == "6 images approved."
            page.click("#publish")
            page.wait_for_url(re.compile(r".*message=.*"))
            assert page.inner_text("#message") == "6 images published."
            assert page.locator("tr.batch").count() == 0
            page.goto(review + "?state=rejected")
            cell = page.locator(f"tr.batch[data-batch='{world['again']}'] td").nth(3)
            assert "<b>duplicate</b> & co" in cell.inner_text()
            assert cell.locator("b").count() == 0
            page.screenshot(path=str(tmp_path / "after.png"), full_page=True)
            page.click("#logout")
            page.wait_for_url(review + "login")
            assert context.cookies() == []
            page.goto(review)
            assert page.url == review + "login"
            assert not errors, errors
        finally:
            browser.close()
    eve = site.client(world["tokens"]["eve"])
    states = {
        b["batch"]: b["state"]
        for b in eve.get("/v1/operator/batches", params={"state": "all"}).json()["batches"]
    }
    assert states[world["again"]] == "rejected" and states[world["other"]] == "published"
    assert states[bob_batch] == "published"
    inbox = site.client(world["tokens"]["bob"]).get("/v1/notifications").json()["notifications"]
    assert [[i["event"] for i in m["items"]] for m in inbox][:2] == [["published"], ["approved"]]
