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

"""Exactly-once subject-set sync under random fault schedules against the
virtual-time Panoptes stand-in (issue 16), and the errors that name a
missing scope, role or the upload limit, and subject replacement.

Each schedule (one seed) runs the sync until it succeeds, injecting at
each run a random mix of lost answers after commit (imports, subjects,
the set itself), late-starting and slow import jobs, jobs that die,
5xx answers, a revoked scope, a non-collaborator account and a reached
upload limit; then the faults stop, every job left is run to its end and
one clean run follows.  Every schedule must end with exactly one subject
per published picture in the set, showing that picture.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import random
import shutil
import tempfile

import pytest
from export_test_utils import ExportRepo

from lsst.epo.zooniverse.demo.panoptes_standin import PanoptesStandIn
from lsst.epo.zooniverse.export.serve import PublicServer
from lsst.epo.zooniverse.export.service import ExportService
from lsst.epo.zooniverse.export.service_config import ServiceConfig
from lsst.epo.zooniverse.zooniverse.replacement import REPLACES_METADATA_KEY
from lsst.epo.zooniverse.zooniverse.subject_sets import (
    SubjectSetError,
    SubjectSetPermissionError,
    SubjectSetPublisher,
    UploadLimitError,
    ZooniverseCredentials,
)

N_SEEDS = 200
PROFILE_SEEDS = None
N_OBJECTS = 6


@pytest.fixture(scope="module")
def service():
    # The state database, staging and public location on tmpfs when
    # there is one: every run commits and publishes manifests (fsync),
    # and the schedules make about a thousand runs.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    root = pathlib.Path(tempfile.mkdtemp(prefix="set-sync-faults-", dir=shm))
    repo = ExportRepo(str(root / "repo"))
    repo.put_rgb("u/alice/zoo/run1", patch=0, n=N_OBJECTS, seed=3)
    public = root / "public"
    public.mkdir()
    with PublicServer(str(public), host="127.0.0.1", port=0) as web:
        config = ServiceConfig.load(
            None,
            database=f"sqlite:///{root}/state.sqlite3",
            staging=str(root / "staging"),
            public_root=str(public),
            public_url=web.url,
        )
        with ExportService(config) as export:
            export.register_project(
                "galaxies",
                zooniverse_project_id=77,
                owner="alice",
                repo=repo.root,
                collections="u/alice/zoo/*",
                dataset_types=["zooniverse_rgb"],
            )
            export.poll()
            for batch in export.review():
                export.approve(batch["batch"], operator="eve")
            assert export.publish().published == N_OBJECTS
            yield export
    shutil.rmtree(root, ignore_errors=True)


def make_publisher(service, standin, **options):
    credentials = ZooniverseCredentials(
        endpoint=standin.url, client_id=standin.client_id, client_secret=standin.client_secret
    )
    settings = {
        "retry_delay": 0.0,
        "server_retries": 2,
        "poll_interval": 150.0,
        "import_stall_seconds": 900.0,
        "import_timeout": 3 * 3600.0,
        "lost_answer_grace": 120.0,
        "sleep": standin.advance,  # the stand-in's virtual clock
    }
    settings.update(options)
    return SubjectSetPublisher(service, credentials, **settings)


def assert_one_subject_per_picture(service, standin, set_id):
    rows = {row.external_id: row for row in SubjectSetPublisher(service).rows("galaxies")}
    held = standin.set_subjects(set_id)
    assert sorted(s["external_id"] for s in held) == sorted(rows), "one subject per picture, none twice"
    for subject in held:
        assert subject["locations"] == [{"image/png": url} for url in rows[subject["external_id"]].locations]


def inject(standin, rng, method):
    """Arm a random set of faults for the next run; return the stop fault
    armed (a scope, a role or the limit) if any.
    """
    queue = standin.imports_queue
    queue.row_seconds = rng.choice([0.5, 5.0, 40.0, 400.0])
    queue.start_delay = rng.choice([0.0, 0.0, 200.0, 1500.0, 4000.0])
    queue.dies_after = rng.choice([None, None, 0, 1, 3, 5])
    if rng.random() < 0.4:
        standin.lose_answers("/subject_set_imports")
    if rng.random() < 0.3:
        standin.lose_answers("/subjects", rng.randint(1, 3))
    if rng.random() < 0.2:
        standin.lose_answers("/subject_sets")
    if rng.random() < 0.4:
        standin.server_errors(rng.randint(1, 3), status=rng.choice([500, 502, 503, 504]))
    stop = rng.choice([None] * 9 + ["scope", "collaborator", "limit"])
    if stop == "scope":
        standin.revoke_scope("subject" if method == "subjects" else "project")
    elif stop == "collaborator":
        standin.collaborator = False
    elif stop == "limit" and method == "subjects":
        standin.reach_upload_limit()
    else:
        stop = None
    return stop


def clear(standin):
    queue = standin.imports_queue
    queue.row_seconds, queue.start_delay, queue.dies_after = 0.5, 0.0, None
    standin.lost.clear()
    standin.failing.clear()
    standin.auth.scopes |= {"project", "subject"}
    for scopes in standin.auth.tokens.values():
        scopes |= {"project", "subject"}
    standin.collaborator = True
    standin.subject_limit = 10**9


def test_random_fault_schedules_end_with_one_subject_per_picture(service):
    # Long: one loop over the seeds, each a short schedule of runs.
    stops = {"scope": 0, "collaborator": 0, "limit": 0}
    duplicates_seen = 0
    for seed in range(PROFILE_SEEDS or N_SEEDS):
        rng = random.Random(seed)
        name = f"seed-{seed}"
        with PanoptesStandIn(project_id=77, virtual_time=True, first_id=100_000 * (seed + 1)) as standin:
            part_rows = rng.choice([2, 4, N_OBJECTS])
            for _ in range(rng.randint(1, 3)):
                method = rng.choice(["import", "import", "subjects"])
                stop = inject(standin, rng, method)
                try:
                    make_publisher(service, standin, part_rows=part_rows).sync(
                        "galaxies", subject_set_name=name, method=method
                    )
                except SubjectSetPermissionError as err:
                    assert stop in ("scope", "collaborator"), f"seed {seed}: {err}"
                    assert (err.scope or err.role) in str(err)
                    stops[stop] += 1
                except UploadLimitError as err:
                    assert stop == "limit" and f"{err.uploaded} subjects of {err.limit}" in str(err)
                    stops["limit"] += 1
                except SubjectSetError:
                    pass
                clear(standin) if stop else None
            clear(standin)
            standin.settle()
            summary = make_publisher(service, standin).sync("galaxies", subject_set_name=name)
            standin.settle()
            # Extra copies (overlapping imports) unlinked by some run.
            duplicates_seen += bool(standin.api_requests("DELETE"))
            assert_one_subject_per_picture(service, standin, summary.subject_set_id)
            assert len(standin.subject_sets) == 1, f"seed {seed}: one subject set"
    # The schedules did exercise the faults they are about.
    if PROFILE_SEEDS:
        return
    assert all(stops.values()), stops
    assert duplicates_seen, "some schedules made overlapping imports (duplicates to reconcile)"


def test_overlapping_imports_are_reconciled(service):
    # Two imports of the same rows ran at the same time (another client,
    # or a dead-looking queued import that started late): the set holds
    # every subject twice; the next run unlinks the newer copies.
    with PanoptesStandIn(project_id=77, virtual_time=True, first_id=94_000_000) as standin:
        publisher = make_publisher(service, standin)
        summary = publisher.sync("galaxies", subject_set_name="overlap", method="subjects", dry_run=False)
        set_id = str(summary.subject_set_id)
        first = {s["external_id"]: s["id"] for s in standin.set_subjects(set_id)}
        for external_id in first:  # a second copy of each, made elsewhere
            copy = standin.new_subject(
                "77", standin.subjects[first[external_id]]["locations"], {}, external_id
            )
            standin.link(set_id, copy["id"])
        again = publisher.sync("galaxies", subject_set_name="overlap")
        assert (again.created, again.unlinked, sorted(again.duplicates)) == (0, N_OBJECTS, sorted(first))
        assert {s["external_id"]: s["id"] for s in standin.set_subjects(set_id)} == first
        assert_one_subject_per_picture(service, standin, set_id)


# --- named refusals ----------------------------------------------------------


@pytest.mark.parametrize(
    "fault, method, expected",
    [
        ("project", "import", "lacks the 'project' scope"),
        ("subject", "subjects", "lacks the 'subject' scope"),
        ("collaborator", "subjects", "not a collaborator"),
    ],
)
def test_permission_errors_name_the_scope_or_role(service, fault, method, expected):
    with PanoptesStandIn(project_id=77, virtual_time=True, first_id=90_000_000) as standin:
        if fault == "collaborator":
            standin.collaborator = False
        else:
            standin.revoke_scope(fault)
        with pytest.raises(SubjectSetPermissionError, match=expected) as info:
            make_publisher(service, standin).sync("galaxies", subject_set_name=f"perm-{fault}", method=method)
        assert (info.value.scope or info.value.role) == fault
        assert "credentials" not in str(info.value) or standin.client_secret not in str(info.value)


def test_upload_limit_is_reported_with_its_numbers(service):
    with PanoptesStandIn(project_id=77, virtual_time=True, first_id=91_000_000) as standin:
        standin.subject_limit = 3
        with pytest.raises(UploadLimitError, match="reached its upload limit, 3 subjects of 3") as info:
            make_publisher(service, standin).sync("galaxies", subject_set_name="limit", method="subjects")
        assert (info.value.uploaded, info.value.limit) == (3, 3)
        assert info.value.summary.created == 3
        # The import does not check the limit: the rest arrives that way.
        summary = make_publisher(service, standin).sync("galaxies", subject_set_name="limit", method="import")
        assert summary.created == N_OBJECTS - 3
        standin.settle()
        assert_one_subject_per_picture(service, standin, summary.subject_set_id)


# --- replacing a published picture ------------------------------------------


def test_replace_subject_makes_a_new_subject_and_unlinks_the_old(service):
    with PanoptesStandIn(project_id=77, virtual_time=True, first_id=92_000_000) as standin:
        publisher = make_publisher(service, standin)
        summary = publisher.sync("galaxies", subject_set_name="replace")
        set_id = summary.subject_set_id
        old_row = publisher.rows("galaxies")[0]
        (old,) = [s for s in standin.set_subjects(set_id) if s["external_id"] == old_row.external_id]
        new_url = old_row.locations[0].replace(".png", "-v2.png")
        new_row = dataclasses.replace(old_row, locations=(new_url,))
        done = publisher.replace_subject(
            "galaxies", old_row.external_id, subject_set_name="replace", row=new_row, operator="eve"
        )
        assert done.created and done.old_subject_ids == (int(old["id"]),)
        (new,) = [s for s in standin.set_subjects(set_id) if s["external_id"] == old_row.external_id]
        assert int(new["id"]) == done.new_subject_id != int(old["id"])
        assert new["locations"] == [{"image/png": new_url}]
        assert new["metadata"][REPLACES_METADATA_KEY] == old["id"]
        assert old["id"] in standin.subjects  # unlinked, not deleted
        recorded = {r["external_id"]: r for r in publisher.recorded_subjects("galaxies", "replace")}
        assert recorded[old_row.external_id]["subject_id"] == done.new_subject_id
        assert recorded[old_row.external_id]["method"] == "replacement"
        audit = [r for r in service.audit_log(project="galaxies") if r["action"] == "subject_replaced"]
        assert str(done.new_subject_id) in audit[-1]["detail"]
        # Idempotent; and a sync neither sends it again nor undoes it.
        posts = len(standin.api_requests("POST", "/api/subjects"))
        again = publisher.replace_subject(
            "galaxies", old_row.external_id, subject_set_name="replace", row=new_row
        )
        assert not again.created and again.new_subject_id == done.new_subject_id and not again.old_subject_ids
        assert len(standin.api_requests("POST", "/api/subjects")) == posts
        rerun = publisher.sync("galaxies", subject_set_name="replace")
        assert (rerun.created, rerun.unlinked) == (0, 0)
        assert [s["id"] for s in standin.set_subjects(set_id) if s["external_id"] == old_row.external_id] == [
            new["id"]
        ]


def test_lost_answer_of_a_replacement_is_found(service):
    with PanoptesStandIn(project_id=77, virtual_time=True, first_id=93_000_000) as standin:
        publisher = make_publisher(service, standin)
        publisher.sync("galaxies", subject_set_name="replace-lost")
        row = publisher.rows("galaxies")[1]
        new_row = dataclasses.replace(row, locations=(row.locations[0].replace(".png", "-v3.png"),))
        standin.lose_answers("/subjects")
        done = publisher.replace_subject(
            "galaxies", row.external_id, subject_set_name="replace-lost", row=new_row
        )
        assert done.created and len(standin.api_requests("POST", "/api/subjects")) == 1
