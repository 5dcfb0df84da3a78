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

"""The operators' review page of ``zooniverse-epo serve``: configuration,
authentication, CSRF, the reserved prefix, audit records identical to the
command line's, and a real headless Chromium approving and publishing a
batch (with a screenshot in ``tests/.output/review_page.png``).
"""

from __future__ import annotations

import hashlib
import html
import http.client
import io
import logging
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml
from click.testing import CliRunner
from export_test_utils import ExportRepo, assert_public_invariant, serving
from PIL import Image

from lsst.epo.zooniverse.cli.epo import main as epo_main
from lsst.epo.zooniverse.export.redaction import default_redactor
from lsst.epo.zooniverse.export.review_page import ReviewPage
from lsst.epo.zooniverse.export.serve import PublicServer
from lsst.epo.zooniverse.export.service import ExportService
from lsst.epo.zooniverse.export.service_config import ServiceConfig, ServiceConfigError

EVE_TOKEN = "eve-review-token-3f9a2c71"
MALLORY_TOKEN = "mallory-file-secret-8d41e0"
OUTPUT_DIR = os.path.join(os.path.dirname(__file__), ".output")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A Butler repository with two RGB collections of Alice's (read
    only: every test polls it into its own state database).
    """
    repo = ExportRepo(str(tmp_path_factory.mktemp("review_repo") / "repo"))
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=3, seed=1, first_id=0)
    repo.put_rgb("u/alice/zoo/run1", patch=1, n=4, seed=2, first_id=10)
    return repo


def write_config(directory, database, port, review=True):
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "mallory.token"
    token_file.write_text(MALLORY_TOKEN + "\n")
    token_file.chmod(0o600)
    config = {
        "database": database,
        "staging": str(directory / "staging"),
        "public_root": str(directory / "public"),
        "public_url": f"http://127.0.0.1:{port}/",
    }
    if review:
        config["review"] = {
            "operators": {
                "eve": {"token_env": "EPO_TEST_REVIEW_TOKEN_EVE"},
                "mallory": {"token_file": "mallory.token"},
            },
            "session_seconds": 600,
        }
    path = directory / "epo.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def make_service(config):
    service = ExportService(ServiceConfig.load(config))
    return service


def register_and_poll(service, repo):
    service.register_project(
        "galaxies",
        zooniverse_project_id=77,
        owner="alice",
        repo=repo.root,
        collections="u/alice/zoo/*",
        actor="setup",
    )
    summary = service.poll()
    assert summary.quarantined == 2, summary
    return [b["batch"] for b in service.review()]


class Site:
    """A service with two quarantined batches behind a server with the
    review page.
    """

    def __init__(self, directory, database, repo):
        self.port = free_port()
        self.config = write_config(directory, database, self.port)
        self.service = make_service(self.config)
        self.batches = register_and_poll(self.service, repo)
        self.page = ReviewPage(self.service, self.service.config.review)
        self.server = PublicServer(
            self.service.public.root.ospath, port=self.port, status=self.service.status, review=self.page
        )
        self.server.start()
        self.url = self.server.url

    def close(self):
        self.server.stop()
        self.service.close()

    def images(self, batch):
        return self.service.review(None, batch)[0]["images"]


@pytest.fixture
def site(tmp_path, repo, monkeypatch):
    monkeypatch.setenv("EPO_TEST_REVIEW_TOKEN_EVE", EVE_TOKEN)
    site = Site(tmp_path / "site", f"sqlite:///{tmp_path}/state.sqlite3", repo)
    yield site
    site.close()


class Client:
    """A tiny HTTP client with a cookie jar (no redirects followed)."""

    def __init__(self, base_url):
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.cookies = {}

    def request(self, method, path, form=None, headers=None, raw_body=None):
        headers = dict(headers or {})
        body = raw_body
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        for cookie in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response.status, response.headers, data

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, form, **kwargs):
        return self.request("POST", path, form=form, **kwargs)

    def login(self, operator="eve", token=EVE_TOKEN):
        status, _, page = self.get("/_review/login")
        assert status == 200
        nonce = re.search(rb'name="nonce" value="([^"]+)"', page).group(1).decode()
        return self.post("/_review/login", {"nonce": nonce, "operator": operator, "token": token})

    def csrf(self):
        status, _, page = self.get("/_review/")
        assert status == 200
        return html.unescape(re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode())


def review_routes(site):
    """Every route of the review page, with real batch and image names."""
    batch = site.batches[0]
    entry = site.images(batch)[0]["entry"]
    quoted = urllib.parse.quote(entry)
    return [
        ("GET", "/_review/"),
        ("GET", "/_review"),
        ("GET", f"/_review/batch/{batch}"),
        ("GET", f"/_review/batch/{batch}?page=2"),
        ("GET", f"/_review/batch/{batch}/contact-sheet.png"),
        ("GET", f"/_review/batch/{batch}/thumb/{quoted}"),
        ("GET", f"/_review/batch/{batch}/image/{quoted}"),
        ("HEAD", f"/_review/batch/{batch}/image/{quoted}"),
        ("GET", "/_review/batch/absent/image/x.png"),
        ("GET", "/_review/anything"),
        ("GET", "/%5Freview/"),
        ("GET", f"/_REVIEW/batch/{batch}/contact-sheet.png"),
        ("POST", f"/_review/batch/{batch}/approve"),
        ("POST", f"/_review/batch/{batch}/reject"),
        ("POST", "/_review/publish"),
        ("POST", "/_review/logout"),
    ]


def assert_refused(site, client, method, path, form=None):
    status, headers, body = client.request(
        method, path, form=form if form is not None else ({"reason": "x"} if method == "POST" else None)
    )
    if status == 303:
        location = headers["Location"]
        # "/_review" is sent to "/_review/", which is sent to the login page.
        assert location in ("/_review/login", "/_review/"), (path, location)
    else:
        assert status == 401, (method, path, status)
    assert PNG_SIGNATURE not in body
    for batch in site.batches:
        assert batch.encode() not in body
    assert headers["Cache-Control"] == "no-store"


def test_review_settings(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("EPO_TEST_REVIEW_TOKEN_EVE", EVE_TOKEN)
    config = ServiceConfig.load(write_config(tmp_path, f"sqlite:///{tmp_path}/s.sqlite3", 1))
    settings = config.review
    assert settings.operators == ["eve", "mallory"]
    assert settings.session_seconds == 600 and settings.secure_cookie is False
    assert settings.authenticate("eve", EVE_TOKEN) == "eve"
    assert settings.authenticate("mallory", MALLORY_TOKEN) == "mallory"
    assert settings.authenticate("eve", MALLORY_TOKEN) is None
    assert settings.authenticate("mallory", EVE_TOKEN) is None
    assert settings.authenticate("eve", EVE_TOKEN[:-1]) is None
    assert settings.authenticate("nobody", EVE_TOKEN) is None
    assert settings.authenticate("", "") is None
    for text in (repr(config), repr(settings)):
        assert EVE_TOKEN not in text and MALLORY_TOKEN not in text
    # Both secrets are masked in logs and errors from now on.
    assert EVE_TOKEN not in default_redactor().redact(f"x {EVE_TOKEN} {MALLORY_TOKEN}")
    assert MALLORY_TOKEN not in default_redactor().redact(f"x {MALLORY_TOKEN}")
    # No review section: no review page.
    assert ServiceConfig.load(write_config(tmp_path / "plain", "sqlite://", 1, review=False)).review is None

    def load(review):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"database": "sqlite://", "review": review}))
        with pytest.raises(ServiceConfigError) as err:
            ServiceConfig.load(str(path))
        assert EVE_TOKEN not in str(err.value) and "hunter2hunter2" not in str(err.value)
        return str(err.value)

    assert "not allowed" in load({"operators": {"eve": {"token": "hunter2hunter2"}}})
    assert "not allowed" in load({"operators": {"eve": {"password": "hunter2hunter2"}}})
    assert "not set" in load({"operators": {"eve": {"token_env": "EPO_TEST_ABSENT_VARIABLE"}}})
    monkeypatch.setenv("EPO_TEST_SHORT", "short")
    assert "at least 12" in load({"operators": {"eve": {"token_env": "EPO_TEST_SHORT"}}})
    assert "cannot read" in load({"operators": {"eve": {"token_file": str(tmp_path / "absent")}}})
    assert "exactly one" in load(
        {"operators": {"eve": {"token_env": "EPO_TEST_REVIEW_TOKEN_EVE", "token_file": "x"}}}
    )
    assert "unknown keys" in load({"operators": {"eve": {"token_env": "X"}}, "colour": "red"})
    assert "unknown keys" in load({"operators": {"eve": {"token_env": "X", "role": "admin"}}})
    assert "at least one" in load({"operators": {}})
    assert "at least one" in load({})
    assert "valid operator name" in load({"operators": {"<eve>": {"token_env": "EPO_TEST_REVIEW_TOKEN_EVE"}}})
    good = {"eve": {"token_env": "EPO_TEST_REVIEW_TOKEN_EVE"}}
    assert "between" in load({"operators": good, "session_seconds": 5})
    assert "number" in load({"operators": good, "session_seconds": "long"})
    assert "true or false" in load({"operators": good, "secure_cookie": "yes"})
    assert "mapping" in load(["eve"])
    # A token file others can read works, with a warning.
    (tmp_path / "open.token").write_text(MALLORY_TOKEN)
    (tmp_path / "open.token").chmod(0o644)
    path = tmp_path / "open.yaml"
    path.write_text(
        yaml.safe_dump(
            {"database": "sqlite://", "review": {"operators": {"m": {"token_file": "open.token"}}}}
        )
    )
    with caplog.at_level(logging.WARNING):
        assert ServiceConfig.load(str(path)).review.authenticate("m", MALLORY_TOKEN) == "m"
    assert any("readable by other users" in r.getMessage() for r in caplog.records)


def test_reserved_prefix(tmp_path):
    root = tmp_path / "public"
    (root / "_review").mkdir(parents=True)
    (root / "_review" / "login").write_bytes(b"not the login page")
    (root / "proj" / "b-1").mkdir(parents=True)
    (root / "proj" / "b-1" / "obj1.png").write_bytes(PNG_SIGNATURE)
    with PublicServer(str(root)) as server:
        client = Client(server.url)
        for path in ("/_review/login", "/_review/", "/_Review/login", "/%5freview/login"):
            assert client.get(path)[0] == 404, path
        assert client.get("/proj/b-1/obj1.png")[2] == PNG_SIGNATURE
        assert client.post("/_review/login", {})[0] == 405
    with pytest.raises(ValueError):
        PublicServer(str(root), status_path="/_review/status.json")


def test_unauthenticated_requests_are_refused(site, caplog):
    caplog.set_level(logging.DEBUG)
    anonymous = Client(site.url)
    for method, path in review_routes(site):
        assert_refused(site, anonymous, method, path)
    # A made-up session cookie is no better.
    forged = Client(site.url)
    forged.cookies["epo_review_session"] = "A" * 43
    for method, path in review_routes(site):
        assert_refused(site, forged, method, path)
    # Wrong tokens, a wrong operator for a right token, an empty token.
    for operator, token in [
        ("eve", "wrong-token-123456"),
        ("eve", EVE_TOKEN.upper()),
        ("mallory", EVE_TOKEN),
        ("nobody", EVE_TOKEN),
        ("eve", ""),
    ]:
        client = Client(site.url)
        status, headers, body = client.login(operator, token)
        assert status == 401, (operator, token)
        assert "epo_review_session" not in client.cookies
        assert EVE_TOKEN.encode() not in body and b"wrong-token" not in body
        for method, path in review_routes(site):
            assert_refused(site, client, method, path)
    # A login without the form's nonce (cross-site login) is refused.
    client = Client(site.url)
    status, _, _ = client.post("/_review/login", {"operator": "eve", "token": EVE_TOKEN})
    assert status == 403 and "epo_review_session" not in client.cookies
    # The public paths never serve quarantined bytes.
    for batch in site.batches:
        for image in site.images(batch):
            for path in (f"/galaxies/{batch}/{image['entry']}", f"/{batch}/{image['entry']}"):
                assert anonymous.get(path)[0] == 404
    root = site.service.public.root.ospath
    assert not os.path.isdir(root) or not os.listdir(root)
    messages = [r.getMessage() for r in caplog.records]
    assert any("Failed review login as 'eve'" in m for m in messages)
    assert not any(EVE_TOKEN in m or "wrong-token-123456" in m for m in messages)
    assert all(b["state"] == "quarantined" for b in site.service.review())


def test_login_throttle_and_logout(site):
    client = Client(site.url)
    assert client.login()[0] == 303
    csrf = client.csrf()
    assert client.get(f"/_review/batch/{site.batches[0]}")[0] == 200
    status, headers, _ = client.post("/_review/logout", {"csrf": csrf})
    assert (status, headers["Location"]) == (303, "/_review/login")
    assert "epo_review_session" not in client.cookies
    assert client.get(f"/_review/batch/{site.batches[0]}")[0] == 303
    # An expired session is refused.
    assert client.login()[0] == 303
    for session in site.page._sessions.active():
        session.expires = time.time() - 1
    assert_refused(site, client, "GET", f"/_review/batch/{site.batches[0]}/contact-sheet.png")
    # Ten failures from one address lock it out for a while, even with the
    # right token.
    for _ in range(10):
        assert Client(site.url).login("eve", "not-the-token-at-all")[0] == 401
    assert Client(site.url).login()[0] == 429


def test_csrf_and_origin(site):
    client = Client(site.url)
    assert client.login()[0] == 303
    csrf = client.csrf()
    batch = site.batches[0]
    before = site.service.audit_log()
    for form, headers in [
        ({"reason": "fine"}, {}),
        ({"reason": "fine", "csrf": ""}, {}),
        ({"reason": "fine", "csrf": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")}, {}),
        ({"reason": "fine", "csrf": csrf}, {"Origin": "http://evil.example"}),
        ({"reason": "fine", "csrf": csrf}, {"Origin": "null"}),
    ]:
        for action in ("approve", "reject"):
            status, _, _ = client.post(f"/_review/batch/{batch}/{action}", form, headers=headers)
            assert status == 403, (form, headers)
        assert client.post("/_review/publish", form, headers=headers)[0] == 403
        assert client.post("/_review/logout", form, headers=headers)[0] == 403
    # A form in another encoding is refused too.
    status, _, _ = client.request(
        "POST",
        f"/_review/batch/{batch}/approve",
        raw_body=b'{"csrf": "x"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 415
    assert site.service.audit_log() == before
    assert all(b["state"] == "quarantined" for b in site.service.review())


def test_pages_and_pictures(site):
    client = Client(site.url)
    assert client.login("mallory", MALLORY_TOKEN)[0] == 303
    status, headers, page = client.get("/_review/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    text = page.decode()
    for batch in site.batches:
        assert batch in text
    assert "u/alice/zoo/run1" in text and "3 quarantined" in text and "4 quarantined" in text
    assert "mallory" in text
    assert EVE_TOKEN not in text and MALLORY_TOKEN not in text
    assert "<script" not in text
    batch = site.batches[1]
    images = site.images(batch)
    status, _, page = client.get(f"/_review/batch/{batch}")
    assert status == 200
    text = page.decode()
    assert "contact-sheet.png" in text
    for image in images:
        assert f"/thumb/{image['entry']}" in text and image["object_id"] in text
    status, headers, sheet = client.get(f"/_review/batch/{batch}/contact-sheet.png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(sheet)) as picture:
        assert picture.width > 128 and picture.height > 128
    assert client.get(f"/_review/batch/{batch}/contact-sheet.png")[2] == sheet
    assert batch in site.page._sheets
    for image in images:
        status, _, thumb = client.get(f"/_review/batch/{batch}/thumb/{image['entry']}")
        assert status == 200
        with Image.open(io.BytesIO(thumb)) as picture:
            assert 0 < max(picture.size) <= 160
        status, _, data = client.get(f"/_review/batch/{batch}/image/{image['entry']}")
        with open(image["quarantine_path"], "rb") as stream:
            assert (status, data) == (200, stream.read())
    for path in (
        f"/_review/batch/{batch}/image/absent.png",
        f"/_review/batch/{batch}/image/..%2F..%2Fepo.yaml",
        f"/_review/batch/{batch}/image/%2e%2e",
        "/_review/batch/absent",
        "/_review/batch/..%2Fx",
        "/_review/nothing",
    ):
        status, _, body = client.get(path)
        assert status == 404, path
        assert PNG_SIGNATURE not in body
    # A hostile reason is shown escaped.
    entry = images[0]["entry"]
    csrf = client.csrf()
    status, headers, _ = client.post(
        f"/_review/batch/{batch}/reject",
        {"csrf": csrf, "entry": entry, "reason": "<script>alert(1)</script> & co"},
    )
    assert (status, headers["Location"]) == (303, f"/_review/batch/{batch}")
    text = client.get(f"/_review/batch/{batch}")[2].decode()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in text
    assert "1 images rejected" in text
    # A rejection needs a reason; the error is shown on the page.
    status, _, _ = client.post(f"/_review/batch/{batch}/reject", {"csrf": csrf, "reason": " "})
    assert status == 303
    assert "needs a reason" in client.get(f"/_review/batch/{batch}")[2].decode()
    # Rejected images are not decoded or shown.
    assert client.get(f"/_review/batch/{batch}/thumb/{entry}")[0] == 404


def decision_records(service):
    return [
        (
            r["actor"],
            r["action"],
            r["project"],
            r["batch"],
            r["entry"],
            r["from_state"],
            r["to_state"],
            r["detail"],
        )
        for r in service.audit_log()
        if r["action"] in ("approved", "rejected")
    ]


def test_decisions_write_the_same_audit_records_as_the_cli(tmp_path, repo, state_db_url, monkeypatch):
    monkeypatch.setenv("EPO_TEST_REVIEW_TOKEN_EVE", EVE_TOKEN)
    site = Site(tmp_path / "site", state_db_url, repo)
    try:
        first, second = site.batches
        entries = [i["entry"] for i in site.images(first)]
        client = Client(site.url)
        assert client.login()[0] == 303
        csrf = client.csrf()
        steps = [
            (f"/_review/batch/{first}/reject", {"entry": entries[0], "reason": "a satellite trail"}),
            (f"/_review/batch/{first}/approve", {"entry": entries[1:], "reason": "looks good"}),
            (f"/_review/batch/{second}/reject", {"reason": "wrong field"}),
        ]
        for path, form in steps:
            status, _, _ = client.post(path, {"csrf": csrf, **form})
            assert status == 303
        page_records = decision_records(site.service)
    finally:
        site.close()
    # The same decisions with the command line, on another state database
    # that polled the same repository (so the same batch names).
    config = write_config(tmp_path / "cli", f"sqlite:///{tmp_path}/cli.sqlite3", 1)
    with make_service(config) as service:
        assert register_and_poll(service, repo) == [first, second]
    runner = CliRunner()
    for args in (
        ["reject", first, "--operator", "eve", "--image", entries[0], "--reason", "a satellite trail"],
        ["approve", first, "--operator", "eve", "--reason", "looks good"]
        + [a for e in entries[1:] for a in ("--image", e)],
        ["reject", second, "--operator", "eve", "--reason", "wrong field"],
    ):
        result = runner.invoke(epo_main, ["--config", config, "--no-progress", *args])
        assert result.exit_code == 0, result.output
    with make_service(config) as service:
        cli_records = decision_records(service)
    assert page_records == cli_records
    assert len(page_records) == 3 + 4 + 2  # per image, plus one per batch changing state
    assert {r[0] for r in page_records} == {"eve"}


def test_serve_command_with_review(tmp_path, repo, monkeypatch):
    monkeypatch.setenv("EPO_TEST_REVIEW_TOKEN_EVE", EVE_TOKEN)
    port = free_port()
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/state.sqlite3", port)
    plain = write_config(tmp_path / "plain", f"sqlite:///{tmp_path}/plain.sqlite3", port, review=False)
    result = CliRunner().invoke(epo_main, ["--config", plain, "serve", "--review", "--port", "0"])
    assert result.exit_code != 0 and "review section" in result.output
    env = dict(os.environ, EPO_TEST_REVIEW_TOKEN_EVE=EVE_TOKEN)
    with serving(config, port, f"http://127.0.0.1:{port}/_review/login", env=env) as (server, first):
        assert b"<form" in first
        client = Client(f"http://127.0.0.1:{port}/")
        assert client.login()[0] == 303
        assert "Nothing in quarantine" in client.get("/_review/")[2].decode()
        assert Client(client_url := f"http://127.0.0.1:{port}/").get("/_review/")[0] == 303, client_url
    stderr = server.stderr.read()
    assert f"review page: http://127.0.0.1:{port}/_review/ for eve, mallory" in stderr
    assert EVE_TOKEN not in stderr and MALLORY_TOKEN not in stderr


def find_chromium():
    """The Chromium binary: $EPO_ZOONIVERSE_CHROMIUM, else Debian's."""
    candidates = [os.environ.get("EPO_ZOONIVERSE_CHROMIUM")]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")]
    candidates.append("/usr/bin/chromium")
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def test_browser_approve_and_publish(site, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(
            "no Chromium binary (install the Debian chromium package: "
            "bash scripts/setup_env.sh --test-tools, or set EPO_ZOONIVERSE_CHROMIUM)"
        )
    from playwright.sync_api import sync_playwright

    batch = site.batches[1]
    images = site.images(batch)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(site.url + "_review/")
            assert page.url.endswith("/_review/login")
            page.fill("#operator", "eve")
            page.fill("#token", EVE_TOKEN)
            page.click("#login")
            page.wait_for_url(site.url + "_review/")
            assert page.inner_text("#operator-name") == "eve"
            cookie = next(c for c in page.context.cookies() if c["name"] == "epo_review_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/_review/"
            page.click(f"a.batch-link:text-is('{batch}')")
            page.wait_for_url(site.url + f"_review/batch/{batch}")
            page.wait_for_load_state("load")
            # Thumbnails load lazily (the "load" event does not wait for
            # them): bring them all into view, then wait until each has
            # loaded or failed.
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('img.thumb, img.sheet')).every(i => i.complete)"
            )
            widths = page.eval_on_selector_all(
                "img.thumb, img.sheet", "imgs => imgs.map(i => [i.complete, i.naturalWidth])"
            )
            assert len(widths) == len(images) + 1
            assert all(complete and width > 0 for complete, width in widths), widths
            assert page.inner_text("#batch-state") == "quarantined"
            screenshot = tmp_path / "review_page.png"
            page.screenshot(path=str(screenshot), full_page=True)
            os.makedirs(OUTPUT_DIR, exist_ok=True)
            shutil.copyfile(screenshot, os.path.join(OUTPUT_DIR, "review_page.png"))
            print(f"\nReview page screenshot: {screenshot} (copy: {OUTPUT_DIR}/review_page.png)")
            page.fill("#reason", "checked in the browser")
            page.click("#approve")
            page.wait_for_url(site.url + "_review/")
            assert f"{batch}: {len(images)} images approved" in page.inner_text("main")
            assert batch not in page.inner_text("#batches")
            page.click("#publish")
            page.wait_for_url(site.url + "_review/")
            assert f"Published {len(images)} images; 1 batches complete" in page.inner_text("main")
            # The published picture, as the public sees it.
            public = browser.new_page()
            published = site.service.review(None, batch)[0]["images"]
            url = published[0]["public_url"]
            assert url.startswith(site.url + "galaxies/" + batch + "/")
            response = public.goto(url)
            assert response.status == 200 and response.headers["content-type"] == "image/png"
        finally:
            browser.close()
    assert site.service.review(None, batch)[0]["state"] == "published"
    for image in published:
        assert image["state"] == "published"
        with urllib.request.urlopen(image["public_url"], timeout=10) as response:
            body = response.read()
        key = image["public_url"][len(site.url) :]
        with open(os.path.join(site.service.public.root.ospath, key), "rb") as stream:
            assert body == stream.read()
        assert body.startswith(PNG_SIGNATURE)
    audit = [r for r in site.service.audit_log(batch=batch) if r["action"] == "approved"]
    assert {r["actor"] for r in audit} == {"eve"}
    assert {r["detail"] for r in audit} == {"checked in the browser"}
    files = assert_public_invariant(site.service)
    assert len(files) == len(images)
    assert hashlib.sha256(body).hexdigest() in files.values()
