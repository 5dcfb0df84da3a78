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

"""Authentication and rate limits of EPO's web application: Gafaelfawr's
headers (believed only from a trusted proxy), operators by scope or by
name, the client address from ``X-Forwarded-For`` only when the peer is a
trusted proxy (per-user and per-address limits, 429 with Retry-After),
the settings' errors naming the variable, and the web tables on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.datastructures import Headers
from web_test_utils import WebSite, Worker, write_config

from lsst.epo.zooniverse.export.state import open_state_database
from lsst.epo.zooniverse.web.inbox import Inbox
from lsst.epo.zooniverse.web.proxy import forwarded_client
from lsst.epo.zooniverse.web.rate_limit import RateLimiter
from lsst.epo.zooniverse.web.settings import WebSettings, WebSettingsError, load_web_settings
from lsst.epo.zooniverse.web.tables import create_web_tables
from lsst.epo.zooniverse.web.tokens import TokenError, TokenStore
from lsst.epo.zooniverse.web.withdrawals import WithdrawalRequests

PROXIES = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.1/32")]


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.1.2.3", "198.51.100.1", "198.51.100.1"),
        ("10.1.2.3", "6.6.6.6, 198.51.100.1, 192.168.1.1", "198.51.100.1"),  # right-most untrusted
        ("10.1.2.3", "10.9.9.9, 192.168.1.1", "10.9.9.9"),  # all trusted: left-most
        ("10.1.2.3", "garbage", "10.1.2.3"),
        ("10.1.2.3", None, "10.1.2.3"),
        (None, "198.51.100.1", None),
    ],
)
def test_forwarded_client(peer, xff, expected):
    headers = Headers({"x-forwarded-for": xff} if xff else {})
    assert forwarded_client(peer, headers, PROXIES) == expected


def test_rate_limiter_buckets():
    limiter = RateLimiter(60)
    assert all(limiter.take("user:a", now=100.0) == 0 for _ in range(60))
    wait = limiter.take("user:a", now=100.0)
    assert 0.9 < wait <= 1.0
    assert limiter.take("user:b", now=100.0) == 0  # per key
    assert limiter.take("user:a", now=101.01) == 0  # one a second refills
    assert limiter.take("user:a", now=101.02) > 0
    assert RateLimiter.retry_after_header(0.2) == "1"


def test_settings_errors_name_the_variable():
    with pytest.raises(WebSettingsError, match="EPO_WEB_RATE_LIMIT"):
        load_web_settings({"EPO_WEB_RATE_LIMIT": "0"})
    with pytest.raises(WebSettingsError, match="EPO_WEB_TRUSTED_PROXIES"):
        load_web_settings({"EPO_WEB_TRUSTED_PROXIES": "10.0.0.0/8, nonsense"})
    with pytest.raises(WebSettingsError, match="EPO_WEB_AUTH"):
        load_web_settings({"EPO_WEB_AUTH": "basic"})
    with pytest.raises(WebSettingsError, match="EPO_WEB_PATH_PREFIX"):
        load_web_settings({"EPO_WEB_PATH_PREFIX": "epo/"})
    with pytest.raises(WebSettingsError, match="EPO_WEB_OPERATORS"):
        load_web_settings({"EPO_WEB_OPERATORS": "eve, bad name"})
    with pytest.raises(WebSettingsError, match="EPO_WEB_TYPO"):
        load_web_settings({"EPO_WEB_TYPO": "1"})
    settings = load_web_settings({"EPO_WEB_TRUSTED_PROXIES": "10.0.0.0/8,::1/128", "OTHER": "x"})
    assert settings.is_trusted_proxy("10.2.3.4") and settings.is_trusted_proxy("::1")
    assert not settings.is_trusted_proxy("127.0.0.1") and not settings.is_trusted_proxy("junk")


def test_every_setting_is_documented():
    doc = (Path(__file__).parent.parent / "doc" / "deployment.md").read_text()
    for field in WebSettings.model_fields:
        assert f"`EPO_WEB_{field.upper()}`" in doc, field


def test_web_tables(state_db_url):
    engine = open_state_database(state_db_url)
    try:
        tokens = TokenStore(engine)
        value, info = tokens.create("alice", ["pi"], lifetime_seconds=60, comment="notebook")
        assert tokens.verify(value) == info and info.scopes == frozenset({"pi"})
        assert tokens.verify(value[:-1] + ("A" if value[-1] != "A" else "B")) is None
        listed = tokens.list("alice")
        assert [row["key"] for row in listed] == [info.key]
        assert value.split(".")[1] not in str(listed)
        assert tokens.revoke(value) and not tokens.revoke(info.key)
        assert tokens.verify(value) is None
        short, _ = tokens.create("bob", ["pi", "operator"], lifetime_seconds=0.05)
        time.sleep(0.1)
        assert tokens.verify(short) is None
        for bad in (("", ["pi"]), ("a b", ["pi"]), ("x", []), ("x", ["admin"])):
            with pytest.raises(TokenError):
                tokens.create(*bad)
        inbox = Inbox(engine)
        first = inbox.add("alice", "one", [{"event": "published"}])
        inbox.add("alice", "two", [])
        inbox.add("bob", "bob's", [])
        assert [m["summary"] for m in inbox.messages("alice")] == ["two", "one"]
        assert inbox.mark_read("bob", [first]) == 0
        assert inbox.mark_read("alice", [first]) == 1
        assert [m["summary"] for m in inbox.messages("alice", unread_only=True)] == ["two"]
        assert inbox.messages("alice")[1]["items"] == [{"event": "published"}]
        withdrawals = WithdrawalRequests(engine)
        withdrawals.request("alice", "galaxies", "why", batch="b1")
        assert [w["batch"] for w in withdrawals.list(username="alice")] == ["b1"]
        assert withdrawals.list(username="bob") == []
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("web_auth")
    config = write_config(root / "epo")
    worker = Worker(config)
    sites = []
    try:
        yield root, config, worker, sites
    finally:
        for site in sites:
            site.close()
        worker.close()


def start(setup, name, **env):
    root, config, _, sites = setup
    site = WebSite(config, str(root / f"{name}.log"), **env)
    sites.append(site)
    return site


def test_web_tables_created_by_many_processes_at_once(state_db_url):
    """Web replicas and workers opening a new database together all succeed
    (on PostgreSQL the losers' CREATE TABLE used to fail on the catalogue's
    unique index)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(6) as pool:
        results = pool.map(_create_tables_in_child, [state_db_url] * 12)
    assert results == ["ok"] * 12
    engine = open_state_database(state_db_url)
    try:
        assert {"web_tokens", "web_inbox", "web_withdrawals"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _create_tables_in_child(url: str) -> str:
    engine = open_state_database(url)
    try:
        create_web_tables(engine)
    except Exception as exc:  # reported, so the parent shows which failed
        return f"{type(exc).__name__}: {exc}"
    finally:
        engine.dispose()
    return "ok"


def test_gafaelfawr_headers_from_trusted_proxy(setup):
    site = start(setup, "ingress", auth="gafaelfawr", trusted_proxies="127.0.0.1/32", operators="eve")
    alice = site.client(**{"X-Auth-Request-User": "alice"})
    assert alice.get("/v1/projects").json() == {"projects": []}
    assert alice.get("/v1/operator/batches").status_code == 403
    admin = site.client(
        **{"X-Auth-Request-User": "carol", "X-Auth-Request-Token-Scopes": "read:image exec:admin"}
    )
    assert admin.get("/v1/operator/batches").status_code == 200
    assert site.client(**{"X-Auth-Request-User": "eve"}).get("/v1/operator/batches").status_code == 200
    other = site.client(**{"X-Auth-Request-User": "dave", "X-Auth-Request-Token-Scopes": "exec:notebook"})
    assert other.get("/v1/operator/batches").status_code == 403
    assert site.client().get("/v1/projects").status_code == 401
    # The ingress's cookie rides along on cross-site requests: changes from
    # another site are refused, reads and programs are not.
    assert alice.post("/v1/notifications/read", json={}).status_code == 200
    evil = {"Origin": "https://evil.example"}
    assert alice.post("/v1/notifications/read", json={}, headers=evil).status_code == 403
    assert (
        alice.post("/v1/notifications/read", json={}, headers={"Sec-Fetch-Site": "cross-site"}).status_code
        == 403
    )
    assert alice.get("/v1/projects", headers=evil).status_code == 200
    assert alice.post("/v1/notifications/read", json={}, headers={"Origin": site.url}).status_code == 200
    # A bearer token means nothing behind Gafaelfawr.
    token = setup[2].token("eve", "operator")
    assert site.client(token).get("/v1/operator/batches").status_code == 401
    # X-Forwarded-Proto from the trusted proxy makes the links https.
    links = site.client(**{"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}).get("/").json()
    assert links["api"]["v1"].startswith("https://")


def test_gafaelfawr_headers_refused_from_other_peers(setup):
    site = start(setup, "untrusted", auth="gafaelfawr", trusted_proxies="10.0.0.0/8")
    forged = site.client(**{"X-Auth-Request-User": "alice", "X-Auth-Request-Token-Scopes": "exec:admin"})
    assert forged.get("/v1/projects").status_code == 401
    assert forged.get("/v1/operator/batches").status_code == 401
    links = site.client(**{"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}).get("/").json()
    assert links["api"]["v1"].startswith("http://127.0.0.1")


def test_rate_limits_behind_trusted_proxy(setup):
    site = start(setup, "limited", rate_limit=5, trusted_proxies="127.0.0.1/32")
    token = setup[2].token("alice", "pi")
    codes = [
        site.client(token, **{"X-Forwarded-For": f"198.51.100.{i}"}).get("/v1/projects").status_code
        for i in range(7)
    ]
    assert codes == [200] * 5 + [429] * 2  # per user, whatever the address
    r = site.client(token).get("/v1/projects")
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 12
    assert site.client(setup[2].token("bob", "pi")).get("/v1/projects").status_code == 200
    bad = {"Authorization": "Bearer nonsense"}
    codes = [
        site.client(**bad, **{"X-Forwarded-For": "203.0.113.5"}).get("/v1/projects").status_code
        for _ in range(7)
    ]
    assert codes == [401] * 5 + [429] * 2
    # Another client address behind the proxy has its own allowance.
    assert site.client(**bad, **{"X-Forwarded-For": "203.0.113.6"}).get("/v1/projects").status_code == 401


def test_forwarded_for_ignored_without_trusted_proxy(setup):
    site = start(setup, "direct", rate_limit=5)
    bad = {"Authorization": "Bearer nonsense"}
    codes = [
        site.client(**bad, **{"X-Forwarded-For": f"203.0.113.{i}"}).get("/v1/projects").status_code
        for i in range(7)
    ]
    assert codes == [401] * 5 + [429] * 2
