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

"""The export service on a real Butler repository and both state
databases: registration, the state flow, ownership, hostile datasets,
metadata policy, audit log, HTTP publication.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import urllib.request
import uuid
import zipfile

import numpy as np
import pytest
import sqlalchemy as sa
from export_test_utils import ExportRepo, assert_public_invariant, public_files, zip_png_entries

from lsst.daf.butler import CollectionType
from lsst.epo.zooniverse.export.manifest import anonymous_subject_id
from lsst.epo.zooniverse.export.notify import Notifier
from lsst.epo.zooniverse.export.serve import PublicServer
from lsst.epo.zooniverse.export.service import ExportService, ExportServiceError, PollSummary
from lsst.epo.zooniverse.export.service_config import ServiceConfig, ServiceConfigError
from lsst.epo.zooniverse.export.state import (
    AUDIT_LOG,
    SCHEMA_VERSION,
    open_state_database,
    schema_version,
)
from lsst.epo.zooniverse.formats.png import read_png_text


class RecordingNotifier(Notifier):
    def __init__(self):
        self.notifications = []

    def notify(self, notification):
        self.notifications.append(notification)


@pytest.fixture
def repo(tmp_path):
    return ExportRepo(str(tmp_path / "repo"))


def make_service(tmp_path, url, public_url="http://127.0.0.1:1/", **overrides):
    config = ServiceConfig.load(
        None,
        database=url,
        staging=str(tmp_path / "staging"),
        public_root=str(tmp_path / "public"),
        public_url=public_url,
        **overrides,
    )
    notifier = RecordingNotifier()
    return ExportService(config, notifier=notifier), notifier


def register_alice(service, repo, **kwargs):
    options = {
        "zooniverse_project_id": 4242,
        "owner": "alice",
        "repo": repo.root,
        "collections": "u/alice/zoo/*",
        "dataset_types": ["zooniverse_rgb", "zooniverse_cutout"],
        "contact": "alice@example.org",
    }
    options.update(kwargs)
    return service.register_project("galaxies", **options)


def tree(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)


def test_schema_is_migrated_and_audit_log_is_append_only(state_db_url):
    engine = open_state_database(state_db_url, target_version=1)
    with engine.begin() as connection:
        assert schema_version(connection) == 1
        connection.execute(AUDIT_LOG.insert().values(at="t", actor="a", action="registered"))
    engine.dispose()
    engine = open_state_database(state_db_url)
    with engine.connect() as connection:
        assert schema_version(connection) == SCHEMA_VERSION == 6
        assert connection.execute(sa.select(sa.func.count()).select_from(AUDIT_LOG)).scalar() == 1
    for statement in (AUDIT_LOG.update().values(actor="mallory"), AUDIT_LOG.delete()):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with engine.begin() as connection:
                connection.execute(statement)
    with engine.connect() as connection:
        assert connection.execute(sa.select(AUDIT_LOG.c.actor)).scalars().all() == ["a"]
    engine.dispose()
    # Opening again is a no-op; a database newer than the code is refused.
    open_state_database(state_db_url).dispose()
    with pytest.raises(Exception, match="no-upgrade|version"):
        open_state_database(state_db_url, upgrade=False, target_version=SCHEMA_VERSION + 1)


def test_migration_6_counts_unavailable_retrievals_from_the_audit_log(state_db_url):
    from lsst.epo.zooniverse.export.state import DATASETS, PROJECTS

    # A version-5 database, as version 5 made it (no counter column).
    engine = open_state_database(state_db_url, target_version=5)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE datasets DROP COLUMN retrieval_failures")
        connection.execute(
            PROJECTS.insert().values(
                id=1, name="p", zooniverse_project_id=1, owner="alice", repo="r", collections="u/alice/x",
                dataset_types="[]", metadata_policy="full", registered_at="t", registered_by="me",
            )
        )  # fmt: skip
        for k, batch in enumerate(("b0", "b1")):
            connection.execute(
                DATASETS.insert().values(
                    project_id=1, dataset_uuid=f"u{k}", dataset_type="zooniverse_rgb", run="u/alice/x",
                    data_id="{}", batch=batch, state="discovered", discovered_at="t", updated_at="t",
                )
            )  # fmt: skip
        errors = [("b0", "RetrievalUnavailableError: missing")] * 2 + [("b0", "OSError: x"), ("b1", "x")]
        for batch, detail in errors:
            connection.execute(
                AUDIT_LOG.insert().values(at="t", actor="poll", action="error", batch=batch, detail=detail)
            )
    engine.dispose()
    engine = open_state_database(state_db_url)
    with engine.connect() as connection:
        counts = dict(connection.execute(sa.select(DATASETS.c.batch, DATASETS.c.retrieval_failures)).all())
    engine.dispose()
    assert counts == {"b0": 2, "b1": 0}


def test_registration_rules(tmp_path, repo, state_db_url):
    service, _ = make_service(tmp_path, state_db_url)
    with service:
        project = register_alice(service, repo)
        assert project["dataset_types"] == ["zooniverse_rgb", "zooniverse_cutout"]
        with pytest.raises(ExportServiceError, match="already registered"):
            register_alice(service, repo)
        for collections, match in [
            ("u/bob/zoo/*", "under u/alice/"),
            ("u/alice*/zoo", "glob in the owner part|under u/alice/"),
            ("u/alice/../bob/run", r"'\.\.'"),
            ("u/alice/", "under u/alice/"),
            ("prod/DR1", "under u/alice/"),
        ]:
            with pytest.raises(ExportServiceError, match=match):
                service.register_project(
                    "other", zooniverse_project_id=1, owner="alice", repo=repo.root, collections=collections
                )
        with pytest.raises(ExportServiceError, match="not allowed by the data-rights policy"):
            service.register_project(
                "other",
                zooniverse_project_id=1,
                owner="alice",
                repo=repo.root,
                collections="u/alice/x",
                dataset_types=["deep_coadd"],
            )
        with pytest.raises(ExportServiceError, match="e-mail"):
            service.register_project(
                "other",
                zooniverse_project_id=1,
                owner="alice",
                repo=repo.root,
                collections="u/alice/x",
                contact="not an address",
            )
        with pytest.raises(ExportServiceError, match="Project name"):
            service.register_project(
                "Bad Name", zooniverse_project_id=1, owner="alice", repo=repo.root, collections="u/alice/x"
            )
        assert [p["name"] for p in service.projects()] == ["galaxies"]
        refused = [r for r in service.audit_log() if r["action"] == "refused"]
        assert len(refused) == 5 and "u/bob/zoo/*" in refused[0]["detail"]


def test_flow_from_butler_to_public_http(tmp_path, repo, state_db_url):
    rgb_a = repo.put_rgb("u/alice/zoo/run1", patch=0, n=5, seed=1)
    rgb_b = repo.put_rgb("u/alice/zoo/run1", patch=1, n=3, seed=2, first_id=100)
    repo.put_rgb("u/bob/zoo/run1", patch=0, n=2, seed=3)  # another PI: never touched
    public_root = tmp_path / "public"
    public_root.mkdir()
    with PublicServer(str(public_root)) as server:
        service, notes = make_service(tmp_path, state_db_url, public_url=server.url)
        with service:
            register_alice(service, repo)
            summary = service.poll()
            assert (summary.discovered, summary.quarantined, summary.images_quarantined) == (2, 2, 8)
            assert public_files(str(public_root)) == {}
            # Idempotent: nothing new on the second poll.
            again = service.poll()
            assert (again.discovered, again.quarantined) == (0, 0)
            batches = service.review("galaxies")
            assert [b["state"] for b in batches] == ["quarantined", "quarantined"]
            by_uuid = {b["dataset_uuid"]: b for b in batches}
            batch_a = by_uuid[str(rgb_a.id)]["batch"]
            batch_b = by_uuid[str(rgb_b.id)]["batch"]
            assert batch_a.startswith("rgb-zooniverse_demo-t0-p0-")
            # Publication before approval publishes nothing.
            assert service.publish().published == 0
            assert_public_invariant(service)
            # Approve one image of B and all of A.
            assert service.approve(batch_b, operator="eve", entries=["obj100.png"]) == 1
            assert service.approve(batch_a, operator="eve", reason="looks fine") == 5
            with pytest.raises(ExportServiceError, match="approved; only quarantined"):
                service.approve(batch_a, operator="eve")
            with pytest.raises(ExportServiceError, match="operator"):
                service.approve(batch_b, operator=" ")
            published = service.publish()
            assert published.published == 6 and published.batches == 1
            files = assert_public_invariant(service)
            assert len(files) == 6
            # The public bytes are the ZIP's PNGs, fetched over HTTP.
            entries = zip_png_entries(open(repo.butler.getURI(rgb_a).ospath, "rb").read())
            for url in published.urls:
                assert url.startswith(server.url + "galaxies/")
                with urllib.request.urlopen(url) as response:
                    body = response.read()
                    assert response.headers["Content-Type"] == "image/png"
                name = url.rsplit("/", 1)[1]
                if url.split("/")[-2] == batch_a:
                    assert body == entries[name]
            # Nothing published twice.
            assert service.publish().published == 0
            # Reject the rest of B: its published image stays.
            with pytest.raises(ExportServiceError, match="already public"):
                service.reject(batch_b, operator="eve", reason="no", entries=["obj100.png"])
            with pytest.raises(ExportServiceError, match="reason"):
                service.reject(batch_b, operator="eve", reason="")
            assert (
                service.reject(batch_b, operator="eve", reason="blurry", entries=["obj101.png", "obj102.png"])
                == 2
            )
            assert_public_invariant(service)
            # Nothing of B waits any more: its public image makes it published.
            assert service.review(batch=batch_b)[0]["state"] == "published"
            assert batch_b not in [b["batch"] for b in service.review()]
            # A new dataset in an old collection is found on the next poll.
            repo.put_rgb("u/alice/zoo/run1", patch=2, n=2, seed=4, first_id=200)
            assert service.poll().discovered == 1
            status = service.status()["projects"]["galaxies"]
            assert status["images"] == {"published": 6, "rejected": 2, "quarantined": 2}
            with urllib.request.urlopen(server.url + "status.json") as response:
                assert response.status == 200
            # Published images keep their index.csv rows (for manifests).
            published_rows = service.published_images("galaxies")
            assert len(published_rows) == 6
            first = next(r for r in published_rows if r["entry"] == "obj0.png")
            assert first["index_row"]["object_id"] == "obj0" and float(first["index_row"]["coverage"]) == 1.0
            assert first["url"].endswith("/obj0.png")
            report = service.report("galaxies")
            assert len(report) == 10
            assert {r["state"] for r in report} == {"published", "rejected", "quarantined"}
            assert all(r["url"] for r in report if r["state"] == "published")
            # The audit log tells the story of every image.
            log = service.audit_log(batch=batch_a)
            actions = [r["action"] for r in log]
            assert actions[:4] == ["discovered", "retrieved", "validated", "quarantined"]
            # Five images and the batch itself.
            assert actions.count("approved") == 6 and actions.count("published") == 6
            assert sorted(r["entry"] or "" for r in log if r["action"] == "published")[0] == ""
            assert {r["actor"] for r in log if r["action"] == "approved"} == {"eve"}
            events = [n.event for n in notes.notifications]
            assert events.count("retrieved") == 3 and "quarantined" in events and "published" in events
            assert all(n.recipients == ("alice@example.org",) for n in notes.notifications)
    # Nothing from bob's namespace was ever retrieved.
    assert not any("bob" in p for p in tree(tmp_path / "staging"))


def test_other_owners_runs_behind_a_chain_are_refused(tmp_path, repo, state_db_url):
    repo.put_rgb("u/bob/secret", patch=0, n=2, seed=5)
    repo.put_rgb("u/alice/zoo/run1", patch=1, n=2, seed=6)
    repo.butler.registry.registerCollection("u/alice/zoo/chain", CollectionType.CHAINED)
    repo.butler.registry.setCollectionChain("u/alice/zoo/chain", ["u/bob/secret", "u/alice/zoo/run1"])
    service, _ = make_service(tmp_path, state_db_url)
    with service:
        register_alice(service, repo, collections="u/alice/zoo/chain")
        summary = service.poll()
        assert summary.discovered == 1
        assert any("u/bob/secret" in r for r in summary.refused)
        refused = [r for r in service.audit_log() if r["action"] == "refused"]
        assert refused and "u/bob/secret" in refused[0]["detail"]
        assert [b["run"] for b in service.review()] == ["u/alice/zoo/run1"]


def hostile_zip(tmp_path, name, entries):
    path = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for entry, data in entries:
            archive.writestr(entry, data)
    return str(path)


def test_hostile_datasets_are_rejected_and_the_service_goes_on(tmp_path, repo, state_db_url):
    good = repo.put_rgb("u/alice/zoo/run1", patch=0, n=2, seed=7)
    good_bytes = open(repo.butler.getURI(good).ospath, "rb").read()
    with zipfile.ZipFile(io.BytesIO(good_bytes)) as archive:
        index = archive.read("index.csv")
        png = archive.read("obj0.png")
    slip = hostile_zip(tmp_path, "slip", [("index.csv", index), ("../../evil.png", png)])
    not_zip = tmp_path / "notzip.zip"
    not_zip.write_bytes(b"GIF89a not a zip at all")
    repo.ingest_raw_rgb("u/alice/zoo/run2", slip, patch=1)
    repo.ingest_raw_rgb("u/alice/zoo/run2", str(not_zip), patch=2)
    repo.butler.registry.registerCollection("u/alice/zoo/run3", CollectionType.RUN)
    service, notes = make_service(tmp_path, state_db_url)
    with service:
        register_alice(service, repo)
        summary = service.poll()
        assert (summary.discovered, summary.quarantined, summary.rejected) == (3, 1, 2)
        reasons = {
            row["batch"]: (row["state"], row["reason"])
            for row in service.report("galaxies")
            if not row["entry"] or row["state"] == "quarantined"
        }
        states = sorted(state for state, _ in reasons.values())
        assert states == ["quarantined", "rejected", "rejected"]
        texts = " ".join(reason for _, reason in reasons.values())
        assert "zip.entry_name" in texts and "../../evil.png" in texts
        assert "zip.not_zip" in texts
        # Nothing was written outside the staging area and the repository.
        assert not (tmp_path / "evil.png").exists() and not (tmp_path.parent / "evil.png").exists()
        for path in tree(tmp_path / "staging"):
            assert ".." not in path
        assert "rejected" in [n.event for n in notes.notifications]


def test_cutouts_and_anonymised_projects(tmp_path, repo, state_db_url):
    rng = np.random.default_rng(8)
    repo.put_cutout(
        "u/alice/zoo/cutouts",
        rng.integers(0, 255, (20, 30, 3), dtype=np.uint8),
        {"object_id": "star 7", "ra": "10.5", "dec": "-3.25", "bands": "gri"},
    )
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=2, seed=9)
    service, _ = make_service(tmp_path, state_db_url)
    with service:
        register_alice(service, repo, metadata_policy="anonymised")
        assert service.poll().images_quarantined == 3
        for batch in service.review():
            service.approve(batch["batch"], operator="eve")
        result = service.publish()
        assert result.published == 3
        files = assert_public_invariant(service)
        # No URL shows an object id or a tract/patch: opaque batch and file
        # names, the same as the subjects' external ids.
        names = sorted(os.path.basename(k) for k in files)
        expected = sorted(anonymous_subject_id("galaxies", i) + ".png" for i in ("obj0", "obj1", "star_7"))
        assert names == expected
        for key in files:
            assert "obj" not in key and "star" not in key and "-t0-" not in key and "-p" not in key
            assert key.split("/")[1].startswith("b-")
        for key in files:
            text = read_png_text((tmp_path / "public" / key).read_bytes())
            assert not {"object_id", "ra", "dec", "WCS", "XML:com.adobe.xmp"} & set(text), (key, text)


def test_staging_tampering_is_caught_before_publication(tmp_path, repo, state_db_url):
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=2, seed=10)
    service, _ = make_service(tmp_path, state_db_url)
    with service:
        register_alice(service, repo)
        service.poll()
        (batch,) = service.review()
        service.approve(batch["batch"], operator="eve")
        victim = batch["images"][0]["quarantine_path"]
        with open(victim, "r+b") as stream:
            stream.seek(40)
            stream.write(b"\x00\x01")
        result = service.publish()
        assert (result.published, result.rejected) == (1, 1)
        files = assert_public_invariant(service)
        assert len(files) == 1
        expected = hashlib.sha256(open(batch["images"][1]["quarantine_path"], "rb").read()).hexdigest()
        assert list(files.values()) == [expected]


def test_wrong_storage_class_and_empty_datasets_are_rejected(tmp_path, repo, state_db_url):
    from astropy.table import Table

    from lsst.epo.zooniverse.export.policy import DataRightsPolicy
    from lsst.epo.zooniverse.formats.rgb_collection import RgbCollection

    repo.butler.registry.registerCollection("u/alice/zoo/tables", CollectionType.RUN)
    repo.butler.put(Table({"a": [1, 2]}), "pi_private_table", run="u/alice/zoo/tables")
    repo.butler.registry.registerCollection("u/alice/zoo/run1", CollectionType.RUN)
    repo.butler.put(
        RgbCollection([], {"object_id": []}),
        "zooniverse_rgb",
        skymap=repo.skymap,
        tract=0,
        patch=3,
        run="u/alice/zoo/run1",
    )
    policy = DataRightsPolicy(dataset_types=("zooniverse_rgb", "pi_private_table"))
    service, _ = make_service(tmp_path, state_db_url, policy=policy.to_mapping())
    with service:
        register_alice(service, repo, dataset_types=["zooniverse_rgb", "pi_private_table"])
        summary = service.poll()
        assert (summary.discovered, summary.rejected, summary.quarantined) == (2, 2, 0)
        reasons = sorted(row["reason"] for row in service.report("galaxies"))
        assert reasons[0].startswith("empty: the dataset holds no images")
        assert reasons[1].startswith("policy.storage_class: dataset type pi_private_table has storage class")
        assert public_files(str(tmp_path / "public")) == {}
        # Nothing of the table was copied out of the Butler.
        assert not any(p.endswith(".parq") or "tables" in p for p in tree(tmp_path / "staging"))


def test_one_failing_dataset_or_project_does_not_stop_the_others(tmp_path, repo, state_db_url):
    broken = repo.put_rgb("u/alice/zoo/run1", patch=0, n=2, seed=11)
    repo.put_rgb("u/alice/zoo/run1", patch=1, n=2, seed=12, first_id=10)
    # The artifact vanished from the datastore behind the registry's back.
    os.unlink(repo.butler.getURI(broken).ospath)
    service, _ = make_service(tmp_path, state_db_url)
    with service:
        service.register_project(
            "aardvark",
            zooniverse_project_id=1,
            owner="alice",
            repo=str(tmp_path / "no-such-repo"),
            collections="u/alice/zoo/*",
        )
        register_alice(service, repo)
        summary = service.poll()
        assert len(summary.errors) == 2, summary.errors
        assert summary.errors[0].startswith("aardvark: ")
        assert summary.errors[1].startswith("galaxies/rgb-zooniverse_demo-t0-p0-")
        assert (summary.quarantined, summary.images_quarantined) == (1, 2)
        errors = [r for r in service.audit_log() if r["action"] == "error"]
        assert len(errors) == 2
        # The failed dataset is retried (and fails again) on the next poll,
        # no claim left behind.
        again = service.poll()
        assert len(again.errors) == 2 and again.skipped == 0


def test_retrieval_refuses_links_files_outside_the_datastore_and_changed_files(tmp_path, repo, state_db_url):
    linked = repo.put_rgb("u/alice/zoo/run1", patch=0, n=2, seed=40)
    truncated = repo.put_rgb("u/alice/zoo/run1", patch=1, n=2, seed=41, first_id=10)
    moved = repo.put_rgb("u/alice/zoo/run1", patch=2, n=2, seed=42, first_id=20)
    repo.put_rgb("u/alice/zoo/run1", patch=3, n=2, seed=43, first_id=30)
    # Bob's private file, which alice's datastore file now points to.
    bobs = repo.put_rgb("u/bob/private/run1", patch=0, n=3, seed=44, first_id=40)
    path = repo.butler.getURI(linked).ospath
    os.unlink(path)
    os.symlink(repo.butler.getURI(bobs).ospath, path)
    path = repo.butler.getURI(truncated).ospath
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-100])
    # A directory of the datastore replaced by a link to one outside it.
    directory = os.path.dirname(repo.butler.getURI(moved).ospath)
    shutil.move(directory, tmp_path / "outside")
    os.symlink(tmp_path / "outside", directory)
    service, notifier = make_service(tmp_path, state_db_url)
    with service:
        register_alice(service, repo)
        summary = service.poll()
        assert summary.errors == [] and (summary.rejected, summary.quarantined) == (3, 1)
        by_patch = {json.loads(r["data_id"])["patch"]: r for r in service.report("galaxies")}
        assert by_patch[0]["state"] == "rejected" and by_patch[0]["reason"].startswith("retrieval.symlink: ")
        assert by_patch[1]["state"] == "rejected"
        assert by_patch[1]["reason"].startswith(
            f"retrieval.size_mismatch: the retrieved file has {len(data) - 100}"
        )
        assert by_patch[2]["state"] == "rejected"
        assert by_patch[2]["reason"].startswith("retrieval.outside_datastore: ")
        assert by_patch[3]["state"] == "quarantined"
        rejected = {r["batch"]: r["detail"] for r in service.audit_log() if r["action"] == "rejected"}
        assert sorted(d.split(":")[0] for d in rejected.values()) == [
            "retrieval.outside_datastore",
            "retrieval.size_mismatch",
            "retrieval.symlink",
        ]
        told = {n.batch for n in notifier.notifications if n.event == "rejected"}
        assert told == set(rejected)
        assert all(r["object_id"] not in ("obj40", "obj41", "obj42") for r in service.report("galaxies"))


def test_a_file_that_stays_unreadable_is_rejected_after_bounded_attempts(tmp_path, repo, state_db_url):
    vanished = repo.put_rgb("u/alice/zoo/run1", patch=0, n=2, seed=50)
    directory = repo.put_rgb("u/alice/zoo/run1", patch=1, n=2, seed=51, first_id=10)
    fifo = repo.put_rgb("u/alice/zoo/run1", patch=2, n=2, seed=52, first_id=20)
    repo.put_rgb("u/alice/zoo/run1", patch=3, n=2, seed=53, first_id=30)
    os.unlink(repo.butler.getURI(vanished).ospath)
    path = repo.butler.getURI(directory).ospath
    os.unlink(path)
    os.mkdir(path)
    path = repo.butler.getURI(fifo).ospath
    os.unlink(path)
    os.mkfifo(path)
    with pytest.raises(ServiceConfigError, match="retrieval_attempts"):
        make_service(tmp_path, state_db_url, retrieval_attempts=0)
    service, notifier = make_service(tmp_path, state_db_url)
    assert service.config.retrieval_attempts == 3
    with service:
        register_alice(service, repo)
        for _ in range(2):
            summary = service.poll()
            assert len(summary.errors) == 3 and summary.rejected == 0, summary.errors
        summary = service.poll()
        assert summary.errors == [] and summary.rejected == 3
        by_patch = {json.loads(r["data_id"])["patch"]: r for r in service.report("galaxies")}
        for patch, kind in ((0, "missing"), (1, "a directory"), (2, "a FIFO")):
            assert by_patch[patch]["state"] == "rejected", by_patch[patch]
            assert by_patch[patch]["reason"].startswith("retrieval.unavailable: ")
            assert kind in by_patch[patch]["reason"] and "(3 attempts)" in by_patch[patch]["reason"]
        assert by_patch[3]["state"] == "quarantined"
        told = {n.batch for n in notifier.notifications if n.event == "rejected"}
        assert told == {by_patch[k]["batch"] for k in (0, 1, 2)}
        assert service.poll().errors == []
        # The attempts are a counter of the dataset, not audit-log text.
        from lsst.epo.zooniverse.export.state import DATASETS

        with service.engine.connect() as connection:
            query = sa.select(DATASETS.c.batch, DATASETS.c.retrieval_failures)
            failures = dict(connection.execute(query).all())
        assert failures == {by_patch[k]["batch"]: 3 if k < 3 else 0 for k in range(4)}


def test_status_under_concurrency_does_not_exhaust_the_connection_pool(tmp_path, repo, monkeypatch):
    import concurrent.futures
    import time

    import sqlalchemy as sa

    create_engine = sa.create_engine

    def small_pool(url, **kwargs):
        return create_engine(url, **kwargs, pool_size=2, max_overflow=0, pool_timeout=5)

    monkeypatch.setattr(sa, "create_engine", small_pool)
    service, _ = make_service(tmp_path, f"sqlite:///{tmp_path}/state.sqlite3")
    with service:
        assert service.store.engine.pool.size() == 2
        register_alice(service, repo)
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: service.status(), range(200)))
        assert time.monotonic() - start < 30
        assert all(list(r["projects"]) == ["galaxies"] for r in results)


def test_a_worker_that_lost_its_claim_writes_nothing(tmp_path, repo, state_db_url):
    from lsst.epo.zooniverse.export.claims import ClaimLostError
    from lsst.epo.zooniverse.export.state import DATASETS

    repo.put_rgb("u/alice/zoo/run1", patch=0, n=2, seed=13)
    slow, _ = make_service(tmp_path, state_db_url)
    fast, _ = make_service(tmp_path, state_db_url)
    with slow, fast:
        register_alice(slow, repo)
        project = slow.repository.project("galaxies")
        slow.intake.discover(project, PollSummary())
        with slow.engine.connect() as connection:
            (dataset_id,) = connection.execute(sa.select(DATASETS.c.id)).scalars().all()
        claimed = slow.claims.claim(dataset_id, ("discovered",))
        assert claimed is not None
        # Another worker cannot take a live claim...
        assert fast.claims.claim(dataset_id, ("discovered",)) is None
        # ...until its lease runs out (slow worker stuck for too long).
        with slow.engine.begin() as connection:
            connection.execute(DATASETS.update().values(claim_expires=0.0))
        summary = fast.poll()
        assert summary.quarantined == 1
        (batch,) = fast.review()
        fast.approve(batch["batch"], operator="eve")
        assert fast.publish().published == 2
        # The slow worker wakes up: every write it tries is refused.
        with pytest.raises(ClaimLostError):
            slow.intake.retrieve(project, claimed)
        with pytest.raises(ClaimLostError):
            slow.claims.renew(dataset_id)
        assert fast.review(batch=batch["batch"])[0]["state"] == "published"
        assert [r["action"] for r in fast.audit_log() if r["action"] == "claim_taken_over"] == [
            "claim_taken_over"
        ]
        assert_public_invariant(fast)


@pytest.fixture
def s3_bucket(monkeypatch):
    """A local S3 endpoint (moto's server, real HTTP) with one bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "epo-test-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "epo-test-cloud-secret-0123456789")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=endpoint)
    # moto keeps its buckets per process, across servers: one bucket per test.
    bucket = f"epo-public-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    yield client, bucket
    server.stop()


def test_publication_to_an_object_store(tmp_path, repo, state_db_url, s3_bucket):
    from lsst.epo.zooniverse.export.redaction import Redactor

    s3_bucket, bucket = s3_bucket

    repo.put_rgb("u/alice/zoo/run1", patch=0, n=3, seed=14)
    config = ServiceConfig.load(
        None,
        database=state_db_url,
        staging=str(tmp_path / "staging"),
        public_root=f"s3://{bucket}/zooniverse/",
        public_url="https://epo.example.org/zooniverse/",
    )
    with ExportService(config, notifier=RecordingNotifier(), redactor=Redactor()) as service:
        register_alice(service, repo)
        service.poll()
        listing = s3_bucket.list_objects_v2(Bucket=bucket)
        assert listing.get("KeyCount", 0) == 0  # nothing public before approval
        (batch,) = service.review()
        service.approve(batch["batch"], operator="eve", entries=["obj0.png", "obj2.png"])
        result = service.publish()
        assert result.published == 2
        assert sorted(result.urls) == [
            f"https://epo.example.org/zooniverse/galaxies/{batch['batch']}/obj{k}.png" for k in (0, 2)
        ]
        keys = sorted(o["Key"] for o in s3_bucket.list_objects_v2(Bucket=bucket)["Contents"])
        assert keys == [f"zooniverse/galaxies/{batch['batch']}/obj{k}.png" for k in (0, 2)]
        images = {i["entry"]: i for i in service.review(batch=batch["batch"])[0]["images"]}
        for key in keys:
            body = s3_bucket.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert body == open(images[key.rsplit("/", 1)[1]]["quarantine_path"], "rb").read()
        assert service.publish().published == 0
        audit = "\n".join(str(r) for r in service.audit_log())
        assert "epo-test-cloud-secret-0123456789" not in audit


def test_one_picture_per_catalog_object(tmp_path, repo, state_db_url):
    # Patches overlap: obj0..obj2 are in patch 0 (partial coverage) and in
    # patch 1 (full coverage); obj1 only ties on coverage with patch 2.
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=3, seed=20, coverage=0.6)
    repo.put_rgb("u/alice/zoo/run1", patch=1, n=3, seed=21, coverage=1.0, edge_distance=10.0)
    repo.put_rgb("u/alice/zoo/run1", patch=2, n=2, seed=22, first_id=1, coverage=1.0, edge_distance=80.0)
    service, _ = make_service(tmp_path, state_db_url)
    with service:
        register_alice(service, repo)
        service.poll()
        batches = {b["data_id"]: b["batch"] for b in service.review()}
        by_patch = {json.loads(k)["patch"]: v for k, v in batches.items()}
        for batch in by_patch.values():
            service.approve(batch, operator="eve")
        result = service.publish()
        assert (result.published, result.superseded) == (3, 5)
        chosen = {r["object_id"]: r["batch"] for r in service.published_images("galaxies")}
        # Best coverage wins (patch 1 over patch 0), then the larger
        # distance from the patch edge (patch 2 over patch 1).
        assert chosen == {"obj0": by_patch[1], "obj1": by_patch[2], "obj2": by_patch[2]}
        assert len(assert_public_invariant(service)) == 3
        report = {(r["batch"], r["object_id"]): r for r in service.report("galaxies")}
        loser = report[(by_patch[0], "obj0")]
        assert loser["state"] == "superseded" and by_patch[1] in loser["reason"]
        assert all(b["state"] == "published" for b in service.review(batch=by_patch[0]))
        # A better picture arriving later does not move a public URL.
        repo.put_rgb("u/alice/zoo/run2", patch=3, n=1, seed=23, coverage=1.0, edge_distance=500.0)
        service.poll()
        (new,) = service.review()
        service.approve(new["batch"], operator="eve")
        again = service.publish()
        assert (again.published, again.superseded) == (0, 1)
        assert {r["object_id"]: r["batch"] for r in service.published_images("galaxies")} == chosen


def test_a_rejected_choice_brings_the_next_picture_back(tmp_path, repo, state_db_url):
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=1, seed=24, coverage=0.5)
    repo.put_rgb("u/alice/zoo/run1", patch=1, n=1, seed=25, coverage=0.9)
    service, _ = make_service(tmp_path, state_db_url)
    with service:
        register_alice(service, repo)
        project = service.repository.project("galaxies")
        service.poll()
        by_patch = {json.loads(b["data_id"])["patch"]: b["batch"] for b in service.review()}
        for batch in by_patch.values():
            service.approve(batch, operator="eve")
        # A publication run chose patch 1's picture and stopped there.
        assert service.publisher.choose_one_image_per_object(project) == 1
        service.reject(by_patch[1], operator="eve", reason="satellite trail")
        result = service.publish()
        assert result.published == 1
        assert [r["batch"] for r in service.published_images("galaxies")] == [by_patch[0]]
        assert_public_invariant(service)


def test_a_batch_whose_images_were_all_superseded_cannot_be_rejected(tmp_path, repo, state_db_url):
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=1, seed=26, coverage=0.5)
    repo.put_rgb("u/alice/zoo/run1", patch=1, n=1, seed=27, coverage=0.9)
    service, notifier = make_service(tmp_path, state_db_url)
    with service:
        register_alice(service, repo)
        project = service.repository.project("galaxies")
        service.poll()
        by_patch = {json.loads(b["data_id"])["patch"]: b["batch"] for b in service.review()}
        for batch in by_patch.values():
            service.approve(batch, operator="eve")
        # Patch 1's picture was chosen: patch 0's only image is superseded
        # and its batch, still approved, counts as published.
        assert service.publisher.choose_one_image_per_object(project) == 1
        audit_before = len(service.audit_log())
        sent_before = len(notifier.notifications)
        with pytest.raises(ExportServiceError, match="cannot be rejected") as raised:
            service.reject(by_patch[0], operator="eve", reason="satellite trail")
        assert "superseded" in str(raised.value)
        assert len(service.audit_log()) == audit_before and len(notifier.notifications) == sent_before
        assert [b["state"] for b in service.review(batch=by_patch[0])] == ["approved"]
        assert service.publish().published == 1
        assert [r["batch"] for r in service.published_images("galaxies")] == [by_patch[1]]


@pytest.mark.parametrize("metadata_policy", ["full", "anonymised"])
def test_manifests_of_published_images(tmp_path, repo, metadata_policy):
    import csv

    from lsst.epo.zooniverse.export.manifest import validate_manifest

    repo.put_rgb("u/alice/zoo/run1", patch=0, n=3, seed=30, coverage=0.5)
    repo.put_rgb("u/alice/zoo/run1", patch=1, n=3, seed=31)  # the same objects, better
    service, _ = make_service(
        tmp_path, f"sqlite:///{tmp_path}/state.sqlite3", public_url="https://epo.example.org/z/"
    )
    with service:
        register_alice(service, repo, metadata_policy=metadata_policy)
        service.poll()
        for batch in service.review():
            service.approve(batch["batch"], operator="eve")
        service.publish()
        (path,) = service.write_manifests("galaxies", str(tmp_path / "manifests"))
        assert (
            validate_manifest(path, url_prefix="https://epo.example.org/z/", metadata_policy=metadata_policy)
            == []
        )
        rows = list(csv.DictReader(open(path, newline="")))
        published = {r["url"]: r for r in service.published_images("galaxies")}
    # One subject per catalog object, pointing at its published picture.
    assert len(rows) == 3 and {r["location:1"] for r in rows} == set(published)
    text = open(path).read()
    if metadata_policy == "full":
        assert {r["external_id"] for r in rows} == {"galaxies:obj0", "galaxies:obj1", "galaxies:obj2"}
        assert "metadata:#object_id" in rows[0]
        assert not any("edge_distance" in column or "row_index" in column for column in rows[0])
    else:
        assert all(r["external_id"].startswith("s-") for r in rows)
        assert "obj0" not in text and "obj1" not in text and "10.0" not in text
