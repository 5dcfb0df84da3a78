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

"""The PI tools (`lsst.epo.zooniverse.pi.project.EpoProject`) on a small
repository: registration, status, subjects, subject sets (the tutorial
notebook runs the whole chain on the demo repository).
"""

import os
import stat

import pytest
import yaml
from export_test_utils import ExportRepo

from lsst.epo.zooniverse.demo.panoptes_standin import PanoptesStandIn
from lsst.epo.zooniverse.export.serve import PublicServer
from lsst.epo.zooniverse.export.service import ExportServiceError
from lsst.epo.zooniverse.pi.project import EpoProject
from lsst.epo.zooniverse.zooniverse.subject_sets import SubjectSetAuthError

REGISTRATION = {"owner": "alice", "collections": "u/alice/zoo/*", "zooniverse_project": 77}


@pytest.fixture
def setup(tmp_path):
    """A repository with two overlapping patches' pictures (6 objects, 2
    of them twice), a public server and a service configuration file.
    """
    repo = ExportRepo(str(tmp_path / "repo"))
    repo.put_rgb("u/alice/zoo/run1", patch=1, n=4, seed=1)
    repo.put_rgb("u/alice/zoo/run1", patch=2, n=4, seed=2, first_id=2, coverage=0.5)
    public = tmp_path / "epo" / "public"
    public.mkdir(parents=True)
    with PublicServer(str(public), host="127.0.0.1", port=0) as web:
        config = tmp_path / "epo" / "service.yaml"
        config.write_text(
            yaml.safe_dump(
                {"database": "sqlite:///state.sqlite3", "staging": "staging", "public_root": "public"}
                | {"public_url": web.url}
            )
        )
        yield repo, config


def _approve_and_publish(project):
    service = project.service
    service.poll()
    for batch in service.review(project.name):
        service.approve(batch["batch"], operator="eve")
    service.publish()


def test_register_is_idempotent_and_refuses_other_settings(setup):
    repo, config = setup
    with EpoProject.register("galaxies", repo=repo.root, config=config, **REGISTRATION) as project:
        assert project.zooniverse_project == 77 and project.collections == "u/alice/zoo/*"
    with EpoProject.register("galaxies", repo=repo.root, config=config, **REGISTRATION) as again:
        assert again.status().datasets == {}
    other = dict(REGISTRATION, zooniverse_project=78)
    with pytest.raises(ExportServiceError, match="zooniverse_project_id is 77, not 78"):
        EpoProject.register("galaxies", repo=repo.root, config=config, **other)
    with pytest.raises(ExportServiceError, match="must be under u/alice/|collections must be under"):
        EpoProject.register(
            "stolen", repo=repo.root, config=config, **dict(REGISTRATION, collections="u/bob/*")
        )
    with pytest.raises(ExportServiceError, match="No project|not registered|unknown"):
        EpoProject("nobody", config=config)


def test_status_subjects_and_subject_sets(setup, monkeypatch):
    repo, config = setup
    with EpoProject.register("galaxies", repo=repo.root, config=config, **REGISTRATION) as project:
        assert project.published_subjects()["external_id"].tolist() == []
        _approve_and_publish(project)
        status = project.status()
        # 8 pictures of 6 objects: 2 superseded by the better-covered ones.
        assert (status.published, status.waiting, status.images.get("superseded")) == (6, 0, 2)
        assert "6 published" in str(status)
        subjects = project.published_subjects()
        assert subjects["external_id"].tolist() == [f"galaxies:obj{k}" for k in range(6)]
        assert all(url.endswith(".png") for url in subjects["url"])
        assert len(project.pictures()) == 8

        with PanoptesStandIn(project_id=77) as zooniverse:
            monkeypatch.setenv("PANOPTES_ENDPOINT", zooniverse.url)
            monkeypatch.setenv("PANOPTES_CLIENT_ID", zooniverse.client_id)
            monkeypatch.setenv("PANOPTES_CLIENT_SECRET", zooniverse.client_secret)
            dry = project.sync_subject_set("first", dry_run=True)
            assert (dry.dry_run, dry.pending, len(zooniverse.requests)) == (True, 6, 0)
            first = project.sync_subject_set("first", method="subjects")
            assert (first.created, first.failed) == (6, 0)
            again = project.sync_subject_set("first", method="subjects")
            assert (again.created, again.already_present) == (0, 6)
            assert project.link_subject_set("first", workflow=901) is True
            assert project.link_subject_set("first", workflow=901) is False
            assert zooniverse.workflows["901"]["links"]["subject_sets"] == [str(first.subject_set_id)]
            with pytest.raises(Exception, match="no workflow 902"):
                project.link_subject_set("first", workflow=902)
            with pytest.raises(Exception, match="No subject set 'second'"):
                project.link_subject_set("second", workflow=901)
            zooniverse.workflows["903"] = {"id": "903", "links": {"project": "78", "subject_sets": []}}
            with pytest.raises(Exception, match="belongs to Zooniverse project 78"):
                project.link_subject_set("first", workflow=903)
            sets = project.subject_sets()
            assert sets["display_name"].tolist() == ["first"]
            assert sets["set_member_subjects_count"].tolist() == sets["recorded"].tolist() == [6]
            sent = project.sent_subjects("first")
            assert sorted(sent["external_id"]) == sorted(subjects["external_id"])
            assert sorted(zooniverse.external_ids(first.subject_set_id)) == sorted(subjects["external_id"])

            # A credentials file readable by others is refused; a private one
            # with a wrong secret is refused by Zooniverse, secret unshown.
            path = config.parent / "zooniverse.yaml"
            path.write_text(
                yaml.safe_dump(
                    {"endpoint": zooniverse.url, "client_id": zooniverse.client_id}
                    | {"client_secret": "wrong-secret-value-123"}
                )
            )
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
            with pytest.raises(Exception, match="chmod 600|readable"):
                project.subject_sets(credentials=path)
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
            with pytest.raises(SubjectSetAuthError) as error:
                project.subject_sets(credentials=path)
            assert "wrong-secret-value-123" not in str(error.value)
