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

"""EPO's web application through a real uvicorn process and httpx: health
and metadata, the OpenAPI schema, bearer tokens (unknown, expired and
revoked are 401), PI isolation (Bob's project is 404 for Alice, collections
outside u/<user>/ are 403), the PI/operator split (a PI cannot approve,
reject, publish or see the review page: 403), the operators' listing
(filters, paging, stretch, already-public warnings), bulk decisions, the
notification digests and the inbox, withdrawal requests.
"""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa
from web_test_utils import WebSite, Worker, free_port, make_repo, write_config


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("web_api")
    database = name = server = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        name = f"web_{uuid.uuid4().hex[:12]}"
        server.create_database(name)
        database = server.url(name)
    repo = make_repo(root / "repo")
    port = free_port()
    config = write_config(root / "epo", database=database, port=port)
    worker = Worker(config)
    tokens = {
        "alice": worker.token("alice", "pi"),
        "bob": worker.token("bob", "pi"),
        "eve": worker.token("eve", "operator"),
    }
    site = WebSite(config, str(root / "server.log"), port=port, rate_limit=100000)
    try:
        alice = site.client(tokens["alice"])
        bob = site.client(tokens["bob"])
        r = alice.post(
            "/v1/projects",
            json={
                "name": "galaxies",
                "zooniverse_project_id": 77,
                "repo": repo.root,
                "collections": "u/alice/zoo/*",
                "contact": "alice@example.org",
            },
        )
        assert r.status_code == 201, r.text
        r = bob.post(
            "/v1/projects",
            json={
                "name": "bobs",
                "zooniverse_project_id": 78,
                "repo": repo.root,
                "collections": "u/bob/zoo/*",
            },
        )
        assert r.status_code == 201, r.text
        summary, sent = worker.cycle()
        assert summary.quarantined == 4, summary
        # One digest per user for the whole cycle, not one per batch per event.
        assert sent == {"alice": 6, "bob": 2}, sent
        yield {"site": site, "worker": worker, "tokens": tokens, "repo": repo, "root": root}
    finally:
        site.close()
        worker.close()
        if server is not None:
            server.drop_database(name)
    output = site.output()
    assert tokens["alice"] not in output and tokens["eve"] not in output
    if database:
        password = sa.make_url(database).password
        assert password and password not in output


def client(world, user):
    return world["site"].client(world["tokens"][user])


def test_health_metadata_and_openapi(world):
    site = world["site"]
    anonymous = site.client()
    assert anonymous.get("/healthz").json()["status"] == "ok"
    meta = anonymous.get(site.url + "/").json()
    assert meta["name"] == "epo-zooniverse"
    assert "version" in meta
    external = anonymous.get("/").json()
    assert external["api"]["openapi"].endswith("/epo-zooniverse/openapi.json")
    schema = anonymous.get("/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/epo-zooniverse/v1/projects",
        "/epo-zooniverse/v1/projects/{name}/batches",
        "/epo-zooniverse/v1/notifications",
        "/epo-zooniverse/v1/notifications/read",
        "/epo-zooniverse/v1/operator/decisions",
        "/epo-zooniverse/v1/operator/batches",
    ):
        assert path in paths, path
    assert not any(path.startswith("/epo-zooniverse/review") for path in paths)
    # Answers are documented, not just requests.
    answer = paths["/epo-zooniverse/v1/projects"]["get"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"]["$ref"].endswith("/ProjectList")
    batch = schema["components"]["schemas"]["BatchSummary"]["properties"]
    assert {"stretch", "already_public", "images", "state"} <= set(batch)
    assert "Notification" in schema["components"]["schemas"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": "Basic YWxpY2U6eA=="},
        {"Authorization": "Bearer epozoo_0123456789abcdef." + "A" * 43},
        # Gafaelfawr's header means nothing in token mode.
        {"X-Auth-Request-User": "alice"},
    ],
    ids=["none", "malformed", "basic", "unknown", "header"],
)
def test_unauthenticated_is_401(world, headers):
    api = world["site"].client(**headers)
    for method, path in (
        ("GET", "/v1/projects"),
        ("GET", "/v1/operator/batches"),
        ("POST", "/review/decide"),
    ):
        r = api.request(method, path)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    # A browser (no Authorization header) is sent to the login form.
    r = api.get("/review/")
    if "Authorization" in headers:
        assert r.status_code == 401
    else:
        assert r.status_code == 303 and r.headers["Location"] == "/epo-zooniverse/review/login"


def test_expired_and_revoked_tokens_are_401(world):
    worker = world["worker"]
    short = worker.token("alice", "pi", days=1.5 / 86400)
    revoked = worker.token("alice", "pi")
    api = world["site"].client(short)
    assert api.get("/v1/projects").status_code == 200
    assert world["site"].client(revoked).get("/v1/projects").status_code == 200
    worker.tokens.revoke(revoked.split(".")[0].removeprefix("epozoo_"))
    time.sleep(1.6)
    assert api.get("/v1/projects").status_code == 401
    assert world["site"].client(revoked).get("/v1/projects").status_code == 401
    # A right key with a wrong secret is 401 too.
    forged = world["tokens"]["alice"][:-3] + (
        "AAA" if not world["tokens"]["alice"].endswith("AAA") else "BBB"
    )
    assert world["site"].client(forged).get("/v1/projects").status_code == 401


def test_pi_sees_only_own_projects(world):
    alice, bob = client(world, "alice"), client(world, "bob")
    assert [p["name"] for p in alice.get("/v1/projects").json()["projects"]] == ["galaxies"]
    assert [p["name"] for p in bob.get("/v1/projects").json()["projects"]] == ["bobs"]
    own = alice.get("/v1/projects/galaxies").json()
    assert own["owner"] == "alice" and own["datasets"] == {"quarantined": 3}
    for path in (
        "/v1/projects/bobs",
        "/v1/projects/bobs/batches",
        "/v1/projects/bobs/images",
        "/v1/projects/bobs/subjects",
        "/v1/projects/bobs/manifests",
        "/v1/projects/bobs/withdrawals",
        "/v1/projects/bobs/catalog-report?collection=u/bob/zoo/run1",
        "/v1/projects/nosuch",
    ):
        r = alice.get(path)
        assert r.status_code == 404, (path, r.text)
        assert "bob" not in r.text.replace("bobs", "")
    r = alice.post("/v1/projects/bobs/withdrawals", json={"reason": "mine now"})
    assert r.status_code == 404
    assert bob.get("/v1/projects/bobs/withdrawals").json()["withdrawals"] == []


def test_pi_registers_only_under_own_namespace(world):
    alice = client(world, "alice")
    body = {"name": "stolen", "zooniverse_project_id": 1, "repo": world["repo"].root}
    for collections in ("u/bob/zoo/*", "u/alicex/zoo", "u/alice/", "u/*/zoo", "*"):
        r = alice.post("/v1/projects", json=dict(body, collections=collections))
        assert r.status_code in (400, 403), (collections, r.text)
    assert alice.post("/v1/projects", json=dict(body, collections="u/bob/zoo/*")).status_code == 403
    # Unknown fields are refused, owner cannot be chosen.
    r = alice.post("/v1/projects", json=dict(body, collections="u/alice/x", owner="bob"))
    assert r.status_code == 422
    names = [p["name"] for p in world["worker"].service.projects()]
    assert "stolen" not in names


def test_pi_cannot_operate(world):
    alice = client(world, "alice")
    batches = [b["batch"] for b in alice.get("/v1/projects/galaxies/batches").json()["batches"]]
    assert len(batches) == 3
    for method, path, body in (
        ("POST", "/v1/operator/decisions", {"decision": "approve", "batches": batches}),
        ("POST", "/v1/operator/decisions", {"decision": "reject", "batches": batches, "reason": "x"}),
        ("POST", "/v1/operator/publish", {}),
        ("GET", "/v1/operator/batches", None),
        ("GET", f"/v1/operator/batches/{batches[0]}", None),
        ("GET", "/v1/operator/withdrawals", None),
        ("GET", "/review/", None),
        ("POST", "/review/decide", None),
    ):
        r = alice.request(method, path, json=body)
        assert r.status_code == 403, (path, r.text)
    states = {b["state"] for b in alice.get("/v1/projects/galaxies/batches").json()["batches"]}
    assert states == {"quarantined"}
    # An operator token is not a PI token.
    assert client(world, "eve").get("/v1/projects").status_code == 403


def test_operator_flow_digests_and_inbox(world):
    alice, bob, eve = client(world, "alice"), client(world, "bob"), client(world, "eve")
    # The poll's digest: one message for Alice's 3 batches.
    inbox = alice.get("/v1/notifications").json()["notifications"]
    assert len(inbox) == 1
    events = [item["event"] for item in inbox[0]["items"]]
    assert events.count("retrieved") == 3 and events.count("quarantined") == 3
    assert "you may remove these files" in inbox[0]["items"][0]["what"]
    assert inbox[0]["summary"].startswith("6 updates on galaxies")
    # Filters and paging.
    page = eve.get("/v1/operator/batches", params={"limit": 2}).json()
    assert page["total"] == 4 and len(page["batches"]) == 2
    rest = eve.get("/v1/operator/batches", params={"limit": 2, "offset": 2}).json()["batches"]
    assert {b["batch"] for b in page["batches"]} | {b["batch"] for b in rest} == {
        b["batch"] for b in eve.get("/v1/operator/batches", params={"limit": 10}).json()["batches"]
    }
    galaxies = eve.get("/v1/operator/batches", params={"project": "galaxies"}).json()
    assert galaxies["total"] == 3 and {b["owner"] for b in galaxies["batches"]} == {"alice"}
    assert all(b["stretch"].get("stretch") for b in galaxies["batches"]), galaxies["batches"][0]
    assert eve.get("/v1/operator/batches", params={"state": "published"}).json()["total"] == 0
    assert eve.get("/v1/operator/batches", params={"state": "bogus"}).status_code == 400
    # run1 patch 0 and patch 1 first; the run2 batch repeats run1
    # patch 0's objects.
    by_run = {}
    for b in galaxies["batches"]:
        by_run.setdefault(b["data_id"]["patch"], []).append(b["batch"])
    first, again = by_run[0]
    second = by_run[1][0]
    r = eve.post(
        "/v1/operator/decisions", json={"decision": "approve", "batches": [first, second], "reason": "ok"}
    )
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["ok"] for x in results] == [True, True] and sum(x["images"] for x in results) == 7
    r = eve.post("/v1/operator/decisions", json={"decision": "reject", "batches": [first]})
    assert r.status_code == 400  # a rejection needs a reason
    # One approval digest for both batches.
    unread = alice.get("/v1/notifications", params={"unread": True}).json()["notifications"]
    assert len(unread) == 2
    assert [i["event"] for i in unread[0]["items"]] == ["approved", "approved"]
    assert bob.get("/v1/notifications").json()["notifications"][0]["summary"].startswith("2 updates on bobs")
    published = eve.post("/v1/operator/publish", json={"project": "galaxies"}).json()
    assert published["published"] == 7
    subjects = alice.get("/v1/projects/galaxies/subjects").json()
    assert subjects["total"] == 7 and all(
        s["url"].startswith("http://127.0.0.1") for s in subjects["subjects"]
    )
    public = world["site"].client().get(subjects["subjects"][0]["url"])
    assert public.status_code == 200 and public.content.startswith(b"\x89PNG")
    # The run2 batch holds objects already public.
    batch = eve.get(f"/v1/operator/batches/{again}").json()
    assert batch["images"] and all(i["already_public"] for i in batch["images"])
    assert "quarantine_path" not in batch["images"][0]
    listed = {b["batch"]: b for b in eve.get("/v1/operator/batches").json()["batches"]}
    assert listed[again]["already_public"] == 3 and listed[again]["already_public_sample"]
    r = eve.post(
        "/v1/operator/decisions",
        json={"decision": "reject", "batches": [again, "nosuch"], "reason": "already public"},
    )
    assert [x["ok"] for x in r.json()["results"]] == [True, False]
    latest = alice.get("/v1/notifications", params={"unread": True}).json()["notifications"][0]
    assert [i["event"] for i in latest["items"]] == ["rejected"]
    assert latest["items"][0]["summary"].endswith("rejected by EPO (already public).")
    # Mark as read: one, then all; Bob's stay unread.
    assert alice.post("/v1/notifications/read", json={"ids": [latest["id"]]}).json()["marked"] == 1
    assert alice.post("/v1/notifications/read", json={"ids": [latest["id"]]}).json()["marked"] == 0
    assert alice.post("/v1/notifications/read", json={}).json()["marked"] >= 1
    assert alice.get("/v1/notifications", params={"unread": True}).json()["notifications"] == []
    assert bob.post("/v1/notifications/read", json={"ids": [latest["id"]]}).json()["marked"] == 0
    assert bob.get("/v1/notifications", params={"unread": True}).json()["notifications"]
    # Per-image status for the PI.
    images = alice.get("/v1/projects/galaxies/images", params={"state": "published"}).json()
    assert images["total"] == 7
    states = {b["batch"]: b["state"] for b in alice.get("/v1/projects/galaxies/batches").json()["batches"]}
    assert states == {first: "published", second: "published", again: "rejected"}


def test_catalog_report_and_manifests(world):
    alice = client(world, "alice")
    r = alice.get("/v1/projects/galaxies/catalog-report", params={"collection": "u/bob/zoo/run1"})
    assert r.status_code == 400 and "bob" in r.json()["detail"]
    r = alice.get("/v1/projects/galaxies/catalog-report", params={"collection": "u/alice/zoo/run1"})
    assert r.status_code == 400  # no sharding output in that collection
    assert alice.get("/v1/projects/galaxies/manifests").json() == {"manifests": []}
    folder = world["root"] / "epo" / "public" / "_manifests" / "galaxies" / "set-12"
    folder.mkdir(parents=True)
    (folder / "manifest-0123456789abcdef.csv").write_text("external_id,location:image\n")
    urls = alice.get("/v1/projects/galaxies/manifests").json()["manifests"]
    assert urls == [
        f"http://127.0.0.1:{world['site'].port}/public/_manifests/galaxies/set-12/manifest-0123456789abcdef.csv"
    ]
    assert world["site"].client().get(urls[0]).text == "external_id,location:image\n"


def test_withdrawal_requests(world):
    alice, eve = client(world, "alice"), client(world, "eve")
    batch = alice.get("/v1/projects/galaxies/batches").json()["batches"][0]["batch"]
    entry = alice.get("/v1/projects/galaxies/images", params={"batch": batch}).json()["images"][0]["entry"]
    assert (
        alice.post("/v1/projects/galaxies/withdrawals", json={"reason": "x", "entry": entry}).status_code
        == 400
    )
    assert (
        alice.post("/v1/projects/galaxies/withdrawals", json={"reason": "x", "batch": "nosuch"}).status_code
        == 404
    )
    bobs = client(world, "bob").get("/v1/projects/bobs/batches").json()["batches"][0]["batch"]
    r = alice.post("/v1/projects/galaxies/withdrawals", json={"reason": "x", "batch": bobs})
    assert r.status_code == 404
    r = alice.post(
        "/v1/projects/galaxies/withdrawals", json={"reason": "wrong object", "batch": batch, "entry": entry}
    )
    assert r.status_code == 202 and r.json()["state"] == "open"
    r = alice.post("/v1/projects/galaxies/withdrawals", json={"reason": "end of project"})
    assert r.status_code == 202
    mine = alice.get("/v1/projects/galaxies/withdrawals").json()["withdrawals"]
    assert [(w["batch"], w["entry"]) for w in mine] == [(batch, entry), (None, None)]
    listed = eve.get("/v1/operator/withdrawals").json()["withdrawals"]
    assert len(listed) == 2
    assert (
        alice.post(f"/v1/operator/withdrawals/{listed[0]['id']}", json={"state": "done"}).status_code == 403
    )
    r = eve.post(f"/v1/operator/withdrawals/{listed[0]['id']}", json={"state": "done", "note": "removed"})
    assert r.status_code == 200 and r.json()["resolved_by"] == "eve"
    again = eve.post(f"/v1/operator/withdrawals/{listed[0]['id']}", json={"state": "refused"})
    assert again.status_code == 404
    assert eve.post(f"/v1/operator/withdrawals/{listed[1]['id']}", json={"state": "open"}).status_code == 422
    mine = alice.get("/v1/projects/galaxies/withdrawals").json()["withdrawals"]
    assert [(w["state"], w["note"]) for w in mine] == [("done", "removed"), ("open", None)]
