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

"""The PI API's classifications through a real uvicorn process: EPO reads
the project's classification export (here a saved one, in the directory
named by ZOONIVERSE_EPO_CLASSIFICATION_EXPORTS), aggregates it and answers
the table; `EpoClient.classifications` makes an astropy table of it, and
`EpoClient.subject_sets` lists the sets EPO filled.  A PI
cannot read another PI's classifications (404), nor join a catalog
outside their namespace (403); an export EPO cannot fetch is a 400 naming
the problem.
"""

from __future__ import annotations

import numpy as np
import pytest
from web_test_utils import WebSite, Worker, free_port, make_repo, write_config

from lsst.epo.zooniverse.demo.fake_classifications import write_fake_classification_export
from lsst.epo.zooniverse.pi.client import EpoClient, EpoClientError
from lsst.epo.zooniverse.web.classifications_view import EXPORTS_ENV, table_as_json

SUBJECTS = {str(9000 + k): {"#object_id": str(k), "bands": "g,r,i"} for k in range(5)}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("web_classifications")
    repo = make_repo(root / "repo")
    port = free_port()
    config = write_config(root / "epo", port=port)
    exports = root / "exports"
    exports.mkdir()
    write_fake_classification_export(str(exports / "galaxies.csv"), SUBJECTS, n_rows=60)
    worker = Worker(config)
    tokens = {"alice": worker.token("alice", "pi"), "bob": worker.token("bob", "pi")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(EXPORTS_ENV, str(exports))
        for key in ("PANOPTES_CLIENT_ID", "PANOPTES_CLIENT_SECRET", "PANOPTES_USERNAME", "PANOPTES_PASSWORD"):
            patch.delenv(key, raising=False)
        web = WebSite(config, str(root / "server.log"), port=port, rate_limit=100000)
    try:
        for user, name, zid in (("alice", "galaxies", 77), ("bob", "bobs", 78)):
            with web.client(tokens[user]) as http:
                r = http.post(
                    "/v1/projects",
                    json={
                        "name": name,
                        "zooniverse_project_id": zid,
                        "repo": repo.root,
                        "collections": f"u/{user}/zoo/*",
                    },
                )
                assert r.status_code == 201, r.text
        yield {"web": web, "tokens": tokens}
    finally:
        web.close()
        worker.close()


def test_pi_reads_own_classifications(site):
    with EpoClient(site["web"].api, token=site["tokens"]["alice"]) as epo:
        table = epo.classifications("galaxies")
    summary = table.meta["zooniverse_classifications"]
    assert summary["n_classifications"] == 60 and not summary["problems"]
    assert set(table["subject_id"]) == set(SUBJECTS)
    assert set(table["object_id"]) == {m["#object_id"] for m in SUBJECTS.values()}
    assert table["n_votes"].dtype.kind == "i" and table["fraction"].dtype.kind == "f"
    assert table["retired"].dtype.kind == "b"
    # A one-answer question's fractions add up to 1 per subject.
    t0 = table[table["task"] == "T0"]
    for subject in SUBJECTS:
        assert np.isclose(t0["fraction"][t0["subject_id"] == subject].sum(), 1.0)
    assert table["n_votes"].description


def test_another_pis_classifications_are_404(site):
    with EpoClient(site["web"].api, token=site["tokens"]["bob"]) as epo:
        with pytest.raises(EpoClientError) as caught:
            epo.classifications("galaxies")
        assert caught.value.status == 404
        with pytest.raises(EpoClientError) as caught:
            epo.classifications("no-such-project")
        assert caught.value.status == 404


def test_catalog_outside_namespace_is_403(site):
    with site["web"].client(site["tokens"]["alice"]) as http:
        r = http.get("/v1/projects/galaxies/classifications", params={"collection": "u/bob/targets"})
    assert r.status_code == 403, r.text


def test_export_that_cannot_be_fetched_is_400(site):
    # Bob's project has no saved export and the server has no Zooniverse
    # credentials: the answer says so and the server stays up.
    with site["web"].client(site["tokens"]["bob"]) as http:
        r = http.get("/v1/projects/bobs/classifications")
        assert r.status_code == 400, r.text
        assert "classification export" in r.json()["detail"]
        assert http.get("/healthz").status_code == 200


def test_table_as_json_masks_and_non_finite():
    from astropy.table import MaskedColumn, Table

    table = Table({"a": [1.0, float("nan")], "b": MaskedColumn(["x", "y"], mask=[False, True])})
    answer = table_as_json(table)
    assert answer["rows"] == [{"a": 1.0, "b": "x"}, {"a": None, "b": None}]
    assert [c["name"] for c in answer["columns"]] == ["a", "b"]


def test_subject_sets_are_the_projects_own(site):
    with EpoClient(site["web"].api, token=site["tokens"]["alice"]) as epo:
        assert epo.subject_sets("galaxies") == []  # EPO has sent nothing yet
    with EpoClient(site["web"].api, token=site["tokens"]["bob"]) as epo:
        with pytest.raises(EpoClientError) as caught:
            epo.subject_sets("galaxies")
        assert caught.value.status == 404
