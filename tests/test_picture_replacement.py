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

"""Picture replacement: a PI reruns a patch with a new stretch into a new
run; once approved, its pictures replace the public ones at new URLs, the
state records what the Zooniverse side must replace, and the old files go
when that is done.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from export_test_utils import ExportRepo, assert_public_invariant, public_files

from lsst.epo.zooniverse.export.service import ExportService
from lsst.epo.zooniverse.export.service_config import ServiceConfig
from lsst.epo.zooniverse.export.state import IMAGES


@pytest.fixture
def repo(tmp_path):
    return ExportRepo(str(tmp_path / "repo"))


def make_service(tmp_path, url, public_url="http://127.0.0.1:1/"):
    config = ServiceConfig.load(
        None,
        database=url,
        staging=str(tmp_path / "staging"),
        public_root=str(tmp_path / "public"),
        public_url=public_url,
    )
    return ExportService(config)


def register(service, repo, metadata_policy="full"):
    service.register_project(
        "galaxies",
        zooniverse_project_id=4242,
        owner="alice",
        repo=repo.root,
        collections="u/alice/zoo/*",
        metadata_policy=metadata_policy,
    )


def poll_and_approve_all(service):
    service.poll()
    batches = [b["batch"] for b in service.review()]
    for batch in batches:
        service.approve(batch, operator="eve")
    return batches


def url_digests(service, images):
    root = service.public.root.ospath
    return {
        image["object_id"]: (
            image["url"],
            public_files(root)[image["url"].removeprefix(service.public.url_prefix)],
        )
        for image in images
    }


@pytest.mark.parametrize("metadata_policy", ["full", "anonymised"])
def test_an_approved_rerun_replaces_the_public_pictures(tmp_path, repo, state_db_url, metadata_policy):
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=3, seed=1)
    with make_service(tmp_path, state_db_url) as service:
        register(service, repo, metadata_policy)
        (old_batch,) = poll_and_approve_all(service)
        assert service.publish().published == 3
        before = url_digests(service, service.published_images("galaxies"))
        old_subjects = {row.external_id: row for row in service.subject_rows("galaxies")}
        # The PI re-stretches and reruns the same patch into a new run.
        repo.put_rgb("u/alice/zoo/run2", patch=0, n=3, seed=2)
        service.poll()
        (new_batch,) = [b["batch"] for b in service.review()]
        # Nothing of the rerun is public before approval.
        assert service.publish().published == 0
        assert url_digests(service, service.published_images("galaxies")) == before
        assert not any(new_batch in key for key in public_files(service.public.root.ospath))
        assert service.pending_replacements() == []
        service.approve(new_batch, operator="eve")
        result = service.publish()
        assert (result.published, result.replaced, result.superseded) == (3, 3, 0)
        after = url_digests(service, service.published_images("galaxies"))
        assert set(after) == set(before)
        for object_id, (url, digest) in after.items():
            old_url, old_digest = before[object_id]
            # A new URL (versioned by the batch) with the new bytes.
            assert url != old_url and new_batch in url and digest != old_digest
        # The subjects keep their external ids and point at the new pictures.
        subjects = {row.external_id: row for row in service.subject_rows("galaxies")}
        assert set(subjects) == set(old_subjects)
        pending = service.pending_replacements("galaxies")
        assert len(pending) == 3
        files = public_files(service.public.root.ospath)
        for replacement in pending:
            old, new = replacement["old"], replacement["new"]
            assert old["batch"] == old_batch and new["batch"] == new_batch
            assert replacement["completed_at"] is None
            assert list(old_subjects[replacement["external_id"]].locations) == old["locations"]
            assert list(subjects[replacement["external_id"]].locations) == new["locations"]
            # The old picture stays public until the subject is replaced.
            assert files[old["keys"][0]] == old["sha256"] and files[new["keys"][0]] == new["sha256"]
        with service.engine.connect() as connection:
            states = dict(connection.execute(sa.select(IMAGES.c.id, IMAGES.c.state)).all())
        assert {states[r["old"]["image_id"]] for r in pending} == {"superseded"}
        assert {states[r["new"]["image_id"]] for r in pending} == {"published"}
        report = {(r["batch"], r["entry"]): r for r in service.report("galaxies")}
        assert all(
            report[(r["old"]["batch"], r["old"]["entry"])]["reason"].startswith("replaced: ") for r in pending
        )
        actions = [r["action"] for r in service.audit_log(batch=old_batch)]
        assert actions.count("replaced") == 3
        # Old and new pictures are both public while the replacement pends.
        assert len(assert_public_invariant(service)) == 6
        # The Zooniverse side replaced the subjects: the old files go.
        for replacement in pending:
            done = service.complete_replacement(replacement["id"], actor="subject-sync")
            assert done["completed_by"] == "subject-sync" and done["completed_at"]
            assert not any(
                os.path.exists(os.path.join(service.public.root.ospath, key))
                for key in replacement["old"]["keys"]
            )
        again = service.complete_replacement(pending[0]["id"], actor="someone-else")
        assert again["completed_by"] == "subject-sync"
        assert service.pending_replacements() == []
        assert len(assert_public_invariant(service)) == 3
        assert service.publish().published == 0


def test_a_rejected_or_partly_approved_rerun_replaces_only_what_was_approved(tmp_path, repo, state_db_url):
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=3, seed=3)
    with make_service(tmp_path, state_db_url) as service:
        register(service, repo)
        poll_and_approve_all(service)
        service.publish()
        before = url_digests(service, service.published_images("galaxies"))
        repo.put_rgb("u/alice/zoo/run2", patch=0, n=3, seed=4)
        service.poll()
        (rerun,) = [b["batch"] for b in service.review()]
        service.reject(rerun, operator="eve", reason="too harsh", entries=["obj1.png", "obj2.png"])
        service.approve(rerun, operator="eve", entries=["obj0.png"])
        result = service.publish()
        assert (result.published, result.replaced) == (1, 1)
        after = url_digests(service, service.published_images("galaxies"))
        assert after["obj1"] == before["obj1"] and after["obj2"] == before["obj2"]
        assert after["obj0"] != before["obj0"] and rerun in after["obj0"][0]
        (pending,) = service.pending_replacements()
        assert pending["object_id"] == "obj0" and pending["external_id"] == "galaxies:obj0"
        # A third run, rejected as a whole, changes nothing.
        repo.put_rgb("u/alice/zoo/run3", patch=0, n=3, seed=5)
        service.poll()
        (third,) = [b["batch"] for b in service.review()]
        service.reject(third, operator="eve", reason="no")
        assert service.publish().replaced == 0
        assert url_digests(service, service.published_images("galaxies")) == after


def test_the_newest_run_of_a_patch_wins_even_before_anything_is_public(tmp_path, repo):
    # The PI reran before EPO's first poll: both runs are found at once.
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=2, seed=6, coverage=1.0)
    repo.put_rgb("u/alice/zoo/run2", patch=0, n=2, seed=7, coverage=0.9)
    with make_service(tmp_path, f"sqlite:///{tmp_path}/state.sqlite3") as service:
        register(service, repo)
        poll_and_approve_all(service)
        result = service.publish()
        assert (result.published, result.superseded, result.replaced) == (2, 2, 0)
        run2 = {r["batch"] for r in service.report("galaxies") if r["state"] == "published"}
        datasets = {r["batch"]: r for r in service.review(batch=next(iter(run2)))}
        assert len(run2) == 1 and all(b["run"] == "u/alice/zoo/run2" for b in datasets.values())
        assert service.pending_replacements() == []


def test_band_frames_are_replaced_with_their_picture(tmp_path, repo, state_db_url):
    from test_export_frames import frames_zip

    repo.ingest_raw_rgb("u/alice/zoo/run1", frames_zip(tmp_path / "run1.zip", ["obj0"], size=16), patch=0)
    with make_service(tmp_path, state_db_url) as service:
        register(service, repo)
        poll_and_approve_all(service)
        assert service.publish().published == 1
        repo.ingest_raw_rgb("u/alice/zoo/run2", frames_zip(tmp_path / "run2.zip", ["obj0"], size=20), patch=0)
        poll_and_approve_all(service)
        assert service.publish().replaced == 1
        (replacement,) = service.pending_replacements()
        old, new = replacement["old"], replacement["new"]
        assert len(old["keys"]) == len(new["keys"]) == 4  # the picture and three band frames
        (image,) = service.published_images("galaxies")
        assert [image["url"], *image["frames"]] == new["locations"]
        files = public_files(service.public.root.ospath)
        assert set(old["keys"] + new["keys"]) <= set(files)
        assert set(assert_public_invariant(service)) == set(old["keys"] + new["keys"])
        service.complete_replacement(replacement["id"])
        files = assert_public_invariant(service)
        assert set(files) == set(new["keys"])


def test_replace_subjects_replaces_each_subject_then_removes_the_old_files(tmp_path, repo):
    from click.testing import CliRunner

    from lsst.epo.zooniverse.cli.epo import main
    from lsst.epo.zooniverse.cli.epo_replacements import replace_subjects, replacements
    from lsst.epo.zooniverse.demo.panoptes_standin import PanoptesStandIn
    from lsst.epo.zooniverse.zooniverse.subject_sets import SubjectSetPublisher, ZooniverseCredentials

    main.add_command(replacements)
    main.add_command(replace_subjects)
    database = f"sqlite:///{tmp_path}/state.sqlite3"
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=3, seed=8)
    with PanoptesStandIn(project_id=4242) as zooniverse:
        credentials = ZooniverseCredentials(
            endpoint=zooniverse.url, client_id=zooniverse.client_id, client_secret=zooniverse.client_secret
        )
        with make_service(tmp_path, database) as service:
            register(service, repo)
            poll_and_approve_all(service)
            service.publish()
            publisher = SubjectSetPublisher(service, credentials)
            set_id = publisher.sync("galaxies", subject_set_name="first", method="subjects").subject_set_id
            before = {s["external_id"]: s for s in zooniverse.set_subjects(set_id)}
            repo.put_rgb("u/alice/zoo/run2", patch=0, n=3, seed=9)
            poll_and_approve_all(service)
            assert service.publish().replaced == 3
            new_locations = {
                r.external_id: [{"image/png": r.locations[0]}] for r in service.subject_rows("galaxies")
            }
        options = ["--database", database, "--staging", str(tmp_path / "staging")]
        options += ["--public-root", str(tmp_path / "public"), "--public-url", "http://127.0.0.1:1/"]
        runner = CliRunner(
            env={
                "PANOPTES_ENDPOINT": zooniverse.url,
                "PANOPTES_CLIENT_ID": zooniverse.client_id,
                "PANOPTES_CLIENT_SECRET": zooniverse.client_secret,
            }
        )
        listed = runner.invoke(main, [*options, "--no-progress", "replacements"])
        assert listed.exit_code == 0 and len(listed.output.strip().splitlines()) == 3, listed.output
        result = runner.invoke(
            main,
            [
                *options,
                "--no-progress",
                "replace-subjects",
                "galaxies",
                "--name",
                "first",
                "--operator",
                "eve",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "3 subjects replaced" in result.output
        after = {s["external_id"]: s for s in zooniverse.set_subjects(set_id)}
        assert set(after) == set(before)
        for external_id, subject in after.items():
            assert subject["id"] != before[external_id]["id"]
            assert subject["locations"] == new_locations[external_id]
        again = runner.invoke(
            main, [*options, "--no-progress", "replace-subjects", "galaxies", "--name", "first"]
        )
        assert again.exit_code == 0 and "No pending picture replacements" in again.output
    with make_service(tmp_path, database) as service:
        assert service.pending_replacements() == []
        assert len(assert_public_invariant(service)) == 3
        completed = service.replacements.find(pending=False)
        assert {r["completed_by"] for r in completed} == {"eve"}
