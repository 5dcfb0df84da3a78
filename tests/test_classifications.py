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

"""Classification exports: reading, counting, joining to the catalog,
writing to the Butler, the ``classifications`` command and the
panoptes-client download.
"""

import csv
import io
import json
import os

import numpy as np
import pytest
from astropy.table import Table
from click.testing import CliRunner

from lsst.epo.zooniverse.butler.dataset_types import TARGETS
from lsst.epo.zooniverse.cli.epo_classifications import classifications
from lsst.epo.zooniverse.demo.fake_classifications import write_fake_classification_export
from lsst.epo.zooniverse.export.manifest import anonymous_subject_id
from lsst.epo.zooniverse.zooniverse.classification_aggregate import answers_of, is_retired
from lsst.epo.zooniverse.zooniverse.classification_export import (
    EXPORT_COLUMNS,
    ClassificationExportError,
    fetch_classification_export,
    panoptes_export_fetcher,
    read_classifications,
)
from lsst.epo.zooniverse.zooniverse.classifications import (
    CLASSIFICATIONS,
    aggregate_classifications,
    classifications_to_butler,
    write_classifications,
)
from lsst.epo.zooniverse.zooniverse.credentials import ZooniverseCredentials

# Panoptes lib/formatter/csv/classification.rb (Classification#headers).
PANOPTES_HEADERS = (
    "classification_id user_name user_id user_ip workflow_id workflow_name workflow_version "
    "created_at gold_standard expert metadata annotations subject_data subject_ids"
).split()


def row(cid, annotations, subjects, *, workflow="101", version="3.1", subject_ids=None, name="Shapes"):
    """One export row; ``subjects`` maps subject id -> subject_data entry."""
    ids = subject_ids if subject_ids is not None else ";".join(subjects)
    return [
        str(cid), "vol", "7", "abc", workflow, name, version, "2026-12-01 10:00:00 UTC", "", "",
        json.dumps({"classifier_version": "2.0"}), json.dumps(annotations), json.dumps(subjects), ids,
    ]  # fmt: skip


def write_csv(path, rows, header=EXPORT_COLUMNS):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def q(task, value, label="Question?"):
    return {"task": task, "task_label": label, "value": value}


SUBJ = {"11": {"retired": None, "#object_id": "1001"}, "12": {"retired": None, "#object_id": "1002"}}


def test_export_columns_are_panoptes_columns():
    assert list(EXPORT_COLUMNS) == PANOPTES_HEADERS


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Spiral", ("single", ["Spiral"])),
        (None, ("single", [])),
        (["Bar", "Ring"], ("multiple", ["Bar", "Ring"])),
        ([], ("empty", [])),
        ([{"choice": "LION", "answers": {"HOWMANY": "2"}, "filters": {}}, {"choice": "ZEBRA"}],
         ("survey", ["LION", "ZEBRA"])),
        ([{"x": 1, "y": 2, "tool": 0, "tool_label": "Star"}, {"x": 3, "y": 4, "tool": 1, "tool_label": None}],
         ("drawing", ["Star", "tool 1"])),
        ([{"select_label": "Colour", "option": True, "value": "r", "label": "Red"}],
         ("dropdown", ["Colour: Red"])),
        ({"weird": 1}, ("other", [])),
    ],
)  # fmt: skip
def test_answers_of_each_task_shape(value, expected):
    assert answers_of(value) == expected


def test_is_retired_reads_status_record_and_boolean():
    assert is_retired({"retired": None}) == (False, "")
    assert is_retired({"retired": False}) == (False, "")
    assert is_retired({"retired": True}) == (True, "")
    assert is_retired({"retired": {"id": 1, "retired_at": None, "classifications_count": 2}}) == (False, "")
    assert is_retired({"retired": {"retired_at": "2026-01-02T00:00:00Z"}}) == (True, "2026-01-02T00:00:00Z")


def test_votes_fractions_and_unanswered(tmp_path):
    star = {"x": 1, "tool": 0, "tool_label": "Star"}
    s11 = {"11": SUBJ["11"]}
    rows = [
        row(1, [q("T0", "Spiral"), q("T1", ["Bar", "Ring"]), q("T2", [star, star])], s11),
        row(2, [q("T0", "Spiral"), q("T1", ["Bar"]), q("T2", [])], s11),
        row(3, [q("T0", "Elliptical"), q("T1", []), q("T2", [star])], s11),
        row(4, [q("T0", None)], s11),
    ]  # fmt: skip
    table, summary = aggregate_classifications(write_csv(tmp_path / "e.csv", rows), project="p")
    t = {(r["task"], r["answer"]): r for r in table}
    assert summary.n_classifications == 4 and not summary.problems
    assert (t["T0", "Spiral"]["n_votes"], t["T0", "Spiral"]["n_classifications"]) == (2, 4)
    assert t["T0", "Spiral"]["fraction"] == pytest.approx(0.5)
    assert t["T0", "Elliptical"]["n_votes"] == 1
    assert t["T0", ""]["n_votes"] == 1  # classification 4 gave no answer
    assert t["T0", "Spiral"]["task_type"] == "single"
    assert t["T1", "Bar"]["n_votes"] == 2 and t["T1", "Ring"]["n_votes"] == 1
    assert t["T1", "Bar"]["n_classifications"] == 3 and t["T1", ""]["n_votes"] == 1
    assert t["T1", "Bar"]["task_type"] == "multiple"
    # Drawing: classifications with a Star mark, and all the marks.
    assert (t["T2", "Star"]["n_votes"], t["T2", "Star"]["n_marks"]) == (2, 3)
    assert t["T2", "Star"]["task_type"] == "drawing" and t["T2", ""]["n_votes"] == 1
    assert set(table["subject_classifications"]) == {4}
    assert set(table["object_id"]) == {"1001"}


def test_workflows_versions_combo_and_subject_groups(tmp_path):
    combo = {"task": "T9", "value": [q("T0", "Spiral"), q("T5", ["Bar"])]}
    rows = [
        row(1, [q("T0", "Spiral")], {"11": SUBJ["11"]}, version="3.1"),
        row(2, [q("T0", "Spiral")], {"11": SUBJ["11"]}, version="3.4"),
        row(3, [q("T0", "Round")], {"11": SUBJ["11"]}, version="4.1"),  # tasks changed
        row(4, [q("T0", "Yes")], {"11": SUBJ["11"]}, workflow="202", name="Other"),
        row(5, [combo], {"11": SUBJ["11"]}),
        row(6, [q("T0", "Spiral")], SUBJ),  # a subject group of two
    ]
    rows[0][8] = "true"  # gold_standard
    rows[1][9] = "owner"  # expert_classifier
    rows[2][9] = "expert"
    table, summary = aggregate_classifications(write_csv(tmp_path / "e.csv", rows), project="p")
    assert (summary.n_gold_standard, summary.n_expert) == (1, 2)
    sel = table[(table["subject_id"] == "11") & (table["workflow_id"] == "101") & (table["task"] == "T0")]
    by_version = {(r["workflow_version"], r["answer"]): r["n_votes"] for r in sel}
    assert by_version == {("3", "Spiral"): 4, ("4", "Round"): 1}
    assert set(sel[sel["workflow_version"] == "3"]["workflow_versions"]) == {"3.1,3.4"}
    assert summary.workflows["101"]["versions"] == {"3.1": 3, "3.4": 1, "4.1": 1}
    assert summary.workflows["202"]["name"] == "Other"
    assert "T5" in set(table["task"]) and "T9" not in set(table["task"])
    assert summary.n_multi_subject == 1
    assert len(table[(table["subject_id"] == "12") & (table["answer"] == "Spiral")]) == 1


def test_problem_rows_are_reported_and_the_rest_counted(tmp_path):
    good = row(1, [q("T0", "Spiral")], {"11": SUBJ["11"]})
    bad_json = row(2, [q("T0", "Spiral")], {"11": SUBJ["11"]})
    bad_json[11] = '[{"task": "T0", "value": '
    bad_subjects = row(3, [q("T0", "Spiral")], {"11": SUBJ["11"]})
    bad_subjects[12] = "{nope"
    short = ["4", "vol"]
    no_workflow = row(5, [q("T0", "Spiral")], {"11": SUBJ["11"]}, workflow="")
    bad_meta = row(6, [q("T0", "Spiral")], {"11": SUBJ["11"]})
    bad_meta[10] = "{oops"
    after = row(7, [q("T0", "Elliptical")], {"11": SUBJ["11"]})
    path = write_csv(tmp_path / "e.csv", [good, bad_json, bad_subjects, short, no_workflow, bad_meta, after])
    # A record with a stray quote, then a good one.
    with open(path, "a", newline="") as f:
        f.write('8,vol,7,abc,101,x,3.1,"2026"x,,,{},[],{},11\r\n')
        csv.writer(f).writerow(row(9, [q("T0", "Spiral")], {"11": SUBJ["11"]}))
    table, summary = aggregate_classifications(path, project="p")
    rules = {(p.classification_id, p.rule) for p in summary.problems}
    assert ("2", "export.malformed_json") in rules and ("3", "export.malformed_json") in rules
    assert ("4", "export.field_count") in rules and ("5", "export.bad_workflow") in rules
    assert ("6", "export.malformed_json") in rules  # noted, row kept
    assert any(p.rule == "export.malformed_csv" and p.line == 9 for p in summary.problems)
    lines = {p.classification_id: p.line for p in summary.problems}
    assert lines["2"] == 3 and lines["4"] == 5
    votes = {r["answer"]: r["n_votes"] for r in table if r["task"] == "T0"}
    assert votes == {"Spiral": 3, "Elliptical": 1}  # rows 1, 6, 9 and 7
    # Nothing lost: every data row is counted or refused with a reason.
    refused = {p.classification_id or p.line for p in summary.problems if p.rule != "export.malformed_json"
               or "row kept" not in p.message}  # fmt: skip
    assert summary.n_rows == 9 and summary.n_classifications + len(refused) == summary.n_rows
    assert summary.as_dict()["problems_by_rule"]["export.malformed_json"] == 3


def test_missing_column_and_missing_file(tmp_path):
    header = [c for c in EXPORT_COLUMNS if c != "subject_data"]
    path = write_csv(tmp_path / "e.csv", [], header=header)
    with pytest.raises(ClassificationExportError, match="lacks column.*subject_data"):
        aggregate_classifications(path, project="p")
    with pytest.raises(ClassificationExportError, match="Cannot open classification export .*absent.csv"):
        aggregate_classifications(tmp_path / "absent.csv", project="p")


def test_gzip_export_is_read(tmp_path):
    """Zooniverse stores the export gzip-compressed (Content-Encoding:
    gzip); a body saved as it came is read the same.
    """
    import gzip

    plain = write_csv(tmp_path / "e.csv", [row(1, [q("T0", "A")], {"11": SUBJ["11"]})])
    packed = tmp_path / "e.csv.gz"
    packed.write_bytes(gzip.compress(open(plain, "rb").read()))
    table, summary = aggregate_classifications(packed, project="p")
    assert summary.n_classifications == 1 and list(table["answer"]) == ["A"]


def test_reading_streams_a_text_stream():
    text = io.StringIO(newline="")
    csv.writer(text).writerows([EXPORT_COLUMNS, row(1, [q("T0", "A")], {"11": SUBJ["11"]})])
    text.seek(0)
    with read_classifications(text) as reader:
        items = list(reader)
    assert [c.classification_id for c in items] == ["1"] and items[0].subjects["11"]["#object_id"] == "1001"


def test_object_ids_from_metadata_external_id_and_anonymised(tmp_path):
    anon = anonymous_subject_id("proj", "1003")
    subjects = {
        "11": {"retired": {"retired_at": "2026-12-01T00:00:00Z"}, "#object_id": "1001"},
        "12": {"retired": None, "bands": "g,r,i"},  # external id proj:1002
        "13": {"retired": None, "bands": "g,r,i"},  # anonymised
        "14": {"retired": None, "bands": "g,r,i"},  # no way to tell
        "15": {"retired": None, "#object_id": "9999"},  # not in the catalog
    }
    rows = [row(k, [q("T0", "Spiral")], {sid: subjects[sid]}) for k, sid in enumerate(subjects, 1)]
    rows.append(row(99, [q("T0", "Star")], {"14": subjects["14"]}))
    catalog = Table({"object_id": ["1001", "1002", "1003"], "ra": [1.0, 2.0, 3.0], "note": ["a", "b", "c"]})
    catalog["ra"].unit = "deg"
    table, summary = aggregate_classifications(
        write_csv(tmp_path / "e.csv", rows),
        project="proj",
        external_ids={"12": "proj:1002", "13": anon, "14": "other:1001"},
        catalog=catalog,
    )
    first = {r["subject_id"]: r for r in table}
    assert first["11"]["object_id"] == "1001" and first["12"]["object_id"] == "1002"
    assert first["13"]["object_id"] == "1003" and first["14"]["object_id"] == ""
    assert summary.matched_by == {"metadata": 1, "external_id": 1, "anonymised_external_id": 1}
    assert summary.unknown_subjects == ["14", "15"] and summary.unknown_classifications == 3
    assert summary.retired_subjects == ["11"]
    assert bool(first["11"]["retired"]) and first["11"]["retired_at"] == "2026-12-01T00:00:00Z"
    assert not first["12"]["retired"]
    # Catalog columns joined, masked where unknown.
    assert first["13"]["ra"] == 3.0 and first["12"]["note"] == "b" and table["ra"].unit == "deg"
    unknown = table[~table["in_catalog"]]
    assert len(unknown) == 3 and unknown["ra"].mask.all()
    assert table.meta["zooniverse_classifications"]["unknown_subjects"] == ["14", "15"]


def make_repo(root, catalog):
    from lsst.daf.butler import Butler, DataCoordinate

    Butler.makeRepo(str(root))
    butler = Butler.from_config(str(root), writeable=True)
    dataset_type = TARGETS.make(butler.dimensions)
    butler.registry.registerDatasetType(dataset_type)
    butler.collections.register("u/pi/targets")
    half = len(catalog) // 2
    for shard, part in ((131072, catalog[:half]), (131073, catalog[half:])):
        data_id = DataCoordinate.standardize(htm7=shard, universe=butler.dimensions)
        butler.put(part, dataset_type, data_id, run="u/pi/targets")
    return butler


CATALOG = Table(
    {
        "object_id": ["1001", "1002", "1003", "1004"],
        "ra": [10.0, 10.1, 10.2, 10.3],
        "dec": [-5.0, -5.1, -5.2, -5.3],
        "row_index": [0, 1, 2, 3],
        "note": ["core", "edge", "core", "star"],
    }
)
CATALOG["ra"].unit = "deg"


def fake_subjects(n=4):
    return {str(500 + k): {"#object_id": str(1001 + k), "bands": "g,r,i"} for k in range(n)}


def test_butler_round_trip(tmp_path):
    butler = make_repo(tmp_path / "repo", CATALOG)
    export = write_fake_classification_export(
        str(tmp_path / "e.csv"), {**fake_subjects(), "777": {"bands": "g"}}, n_rows=50, retire_after=10
    )
    summary = classifications_to_butler(
        export, butler, project="proj", run="u/pi/classifications/1", collections=["u/pi/targets"]
    )
    assert summary.n_classifications == 50 and summary.unknown_subjects == ["777"]
    assert summary.retired_subjects == ["500", "501", "502", "503", "777"]
    (ref,) = butler.query_datasets(CLASSIFICATIONS.name, collections="u/pi/classifications/1")
    assert ref.datasetType.dimensions.names == set()
    back = butler.get(ref)
    assert {"object_id", "in_catalog", "answer", "n_votes", "fraction", "ra", "dec", "note"} <= set(
        back.colnames
    )
    stars = back[(back["task"] == "T0") & (back["answer"] == "Star") & back["in_catalog"]]
    assert set(stars["note"]) <= {"core", "edge", "star"} and len(stars)
    assert int(back[back["task"] == "T0"]["n_votes"].sum()) == 50
    assert back["ra"].unit == "deg"  # as the catalog has it
    # The summary travels in the table's metadata (the Butler strips it
    # unless asked).
    meta = butler.get(ref, parameters={"strip_astropy_meta_yaml": False}).meta["zooniverse_classifications"]
    assert meta["run"] == "u/pi/classifications/1" and meta["unknown_subjects"] == ["777"]
    assert meta["n_classifications"] == 50
    with pytest.raises(FileExistsError, match="already holds zooniverse_classifications"):
        write_classifications(butler, back, "u/pi/classifications/1")


def test_cli_with_export_file(tmp_path):
    make_repo(tmp_path / "repo", CATALOG)
    export = write_fake_classification_export(
        str(tmp_path / "e.csv"), fake_subjects(), n_rows=20, extra_rows=[["broken", "row"]]
    )
    runner = CliRunner()
    args = ["proj", "--export-file", export, "--repo", str(tmp_path / "repo"), "--collection", "u/pi/targets"]
    result = runner.invoke(classifications, [*args, "--output-run", "u/pi/cls/a", "--json"], obj={})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_classifications"] == 20 and data["run"] == "u/pi/cls/a"
    assert data["problems"][0]["classification_id"] == "broken"
    assert data["problems"][0]["rule"] == "export.field_count"
    from lsst.daf.butler import Butler

    butler = Butler.from_config(str(tmp_path / "repo"))
    table = butler.get(CLASSIFICATIONS.name, collections="u/pi/cls/a")
    assert table["in_catalog"].all() and len(table)
    # Text output, and the problem row on standard error.
    result = runner.invoke(classifications, [*args, "--output-run", "u/pi/cls/b"], obj={})
    assert result.exit_code == 0, result.output
    assert "20 classifications counted, 1 problem rows" in result.stdout
    assert "classification broken export.field_count" in result.stderr
    # No repository: counted and reported, nothing written.
    result = runner.invoke(classifications, ["proj", "--export-file", export], obj={})
    assert result.exit_code == 0 and "written" not in result.stdout
    # Errors are one line naming the thing.
    result = runner.invoke(classifications, ["proj", "--export-file", str(tmp_path / "nope.csv")], obj={})
    assert result.exit_code == 1 and "nope.csv" in result.stderr and len(result.stderr.splitlines()) == 1
    result = runner.invoke(classifications, ["proj"], obj={})
    assert result.exit_code == 1 and "--export-file, or --zooniverse-project" in result.stderr
    result = runner.invoke(classifications, [*args], obj={})
    assert result.exit_code == 1 and "--output-run" in result.stderr


def test_fetch_is_atomic(tmp_path):
    def good(project, path):
        with open(path, "w") as f:
            f.write(f"project {project}")

    def failing(project, path):
        with open(path, "w") as f:
            f.write("half")
        raise OSError("connection reset")

    target = tmp_path / "x" / "export.csv"
    assert fetch_classification_export(42, str(target), good) == str(target)
    assert target.read_text() == "project 42"
    with pytest.raises(ClassificationExportError, match="Zooniverse project 42: OSError: connection reset"):
        fetch_classification_export(42, str(target), failing)
    assert target.read_text() == "project 42" and os.listdir(target.parent) == ["export.csv"]


@pytest.fixture
def zooniverse():
    """The Panoptes stand-in with the catalog's four objects as subjects
    of project 4242 and fake volunteers' classifications of them."""
    from lsst.epo.zooniverse.demo.panoptes_standin import PanoptesStandIn

    with PanoptesStandIn(project_id=4242) as server:
        for metadata in fake_subjects().values():
            server.new_subject("4242", [{"image/png": "https://pics.example.org/a.png"}], metadata)
        server.add_fake_classifications(next(iter(server.workflows)), 12)
        yield server


def test_panoptes_client_download(tmp_path, zooniverse):
    """``Project.get_export('classifications')`` through panoptes-client
    against the stand-in's export routes: ``POST`` then ``GET
    /api/projects/<id>/classifications_export`` (``generate=True``), then
    ``media[0].src`` downloaded without API headers (gzip encoded).
    """
    credentials = ZooniverseCredentials(
        endpoint=zooniverse.url, client_id=zooniverse.client_id, client_secret=zooniverse.client_secret
    )
    # No export yet: one clean error naming the project.
    with pytest.raises(ClassificationExportError, match="Zooniverse project 4242"):
        fetch_classification_export(4242, str(tmp_path / "none.csv"), panoptes_export_fetcher(credentials))
    assert not (tmp_path / "none.csv").exists()
    fetcher = panoptes_export_fetcher(credentials, generate=True, wait_timeout=30)
    path = fetch_classification_export(4242, str(tmp_path / "got.csv"), fetcher)
    asked = [(r.method, r.path) for r in zooniverse.requests]
    assert ("POST", "/api/projects/4242/classifications_export") in asked
    assert ("GET", "/api/projects/4242/classifications_export") in asked
    assert any(p.startswith("/blobs/") for _, p in asked)
    with open(path, encoding="utf-8") as f:
        assert f.readline().strip() == ",".join(EXPORT_COLUMNS)  # decoded on the way
    table, summary = aggregate_classifications(path, project="p")
    assert summary.n_classifications == 12 and not summary.problems
    assert np.isin(table["object_id"], ["1001", "1002", "1003", "1004"]).all()
    assert int(table[table["task"] == "T0"]["n_votes"].sum()) == 12
    # The latest export again, without generating one.
    path = fetch_classification_export(
        4242, str(tmp_path / "again.csv"), panoptes_export_fetcher(credentials)
    )
    assert aggregate_classifications(path, project="p")[1].n_classifications == 12


def test_cli_fetches_from_the_standin(tmp_path, zooniverse):
    """``zooniverse-epo classifications`` end to end: the export generated
    and fetched from the stand-in (credentials from the environment, as
    the subject-set commands take them), counted and written to the Butler.
    """
    make_repo(tmp_path / "repo", CATALOG)
    env = {
        "PANOPTES_ENDPOINT": zooniverse.url,
        "PANOPTES_USERNAME": zooniverse.username,
        "PANOPTES_PASSWORD": zooniverse.password,
        "PANOPTES_CLIENT_ID": "",
        "PANOPTES_CLIENT_SECRET": "",
    }
    args = [
        "proj", "--zooniverse-project", "4242", "--generate", "--wait-timeout", "30",
        "--download-to", str(tmp_path / "export.csv"), "--repo", str(tmp_path / "repo"),
        "--collection", "u/pi/targets", "--output-run", "u/pi/cls/fetched", "--json",
    ]  # fmt: skip
    result = CliRunner().invoke(classifications, args, obj={}, env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_classifications"] == 12 and not data["problems"]
    assert "Fetched the classification export" in result.stderr
    from lsst.daf.butler import Butler

    table = Butler.from_config(str(tmp_path / "repo")).get(
        CLASSIFICATIONS.name, collections="u/pi/cls/fetched"
    )
    assert table["in_catalog"].all() and int(table[table["task"] == "T0"]["n_votes"].sum()) == 12


def test_cli_uses_the_registered_project(tmp_path):
    """With a service configuration, the repository, the Zooniverse project
    and the output run come from PROJECT's registration.
    """
    import yaml

    from lsst.epo.zooniverse.export.service import ExportService
    from lsst.epo.zooniverse.export.service_config import ServiceConfig

    make_repo(tmp_path / "repo", CATALOG)
    config = tmp_path / "epo.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database": f"sqlite:///{tmp_path / 'state.sqlite3'}",
                "staging": str(tmp_path / "staging"),
                "public_root": str(tmp_path / "public"),
                "public_url": "http://127.0.0.1:1/",
            }
        )
    )
    service = ExportService(ServiceConfig.load(str(config)))
    service.register_project(
        "proj", zooniverse_project_id=77, owner="pi", repo=str(tmp_path / "repo"), collections="u/pi/*"
    )
    service.close()
    export = write_fake_classification_export(str(tmp_path / "e.csv"), fake_subjects(), n_rows=8)
    obj = {
        "config": str(config),
        "overrides": dict.fromkeys(("database", "staging", "public_root", "public_url", "policy")),
    }
    runner = CliRunner()
    result = runner.invoke(
        classifications, ["proj", "--export-file", export, "--collection", "u/pi/targets", "--json"], obj=obj
    )
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["run"]
    assert run.startswith("u/pi/zooniverse_classifications/")
    from lsst.daf.butler import Butler

    table = Butler.from_config(str(tmp_path / "repo")).get(CLASSIFICATIONS.name, collections=run)
    assert table["in_catalog"].all() and int(table[table["task"] == "T0"]["n_votes"].sum()) == 8
    # Fetching needs credentials: without them, one clean line.
    result = runner.invoke(
        classifications, ["proj"], obj=obj, env={"PANOPTES_CLIENT_ID": "", "PANOPTES_USERNAME": ""}
    )
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    result = runner.invoke(classifications, ["nobody", "--export-file", export], obj=obj)
    assert result.exit_code == 1 and "nobody" in result.stderr
