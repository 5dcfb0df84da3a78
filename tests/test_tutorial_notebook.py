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

"""The PI tutorial notebook, executed top to bottom in a real kernel as a
PI against a live local EPO: the web application (uvicorn, standalone
tokens), a worker process (``zooniverse-epo worker``) and the Panoptes
stand-in.  The test plays the EPO operator through the operators' API
(approving every quarantined batch as it appears), runs EPO's subject-set
commands once the project is published, and plays Zooniverse by saving a
FAKE classification export where EPO reads saved exports.  Interface drift
breaks it here.
"""

import collections
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import nbclient
import nbformat
from astropy.table import Table
from web_test_utils import WebSite, Worker, free_port, write_config

from lsst.epo.zooniverse.demo.fake_classifications import write_fake_classification_export
from lsst.epo.zooniverse.demo.panoptes_standin import PanoptesStandIn
from lsst.epo.zooniverse.web.classifications_view import EXPORTS_ENV

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "pi_tutorial.ipynb"
PROJECT = "demo-galaxies"
SUBJECT_SET = "tutorial-first-light"
EPO = os.path.join(os.path.dirname(sys.executable), "zooniverse-epo")
PANOPTES_KEYS = (
    "PANOPTES_ENDPOINT",
    "PANOPTES_CLIENT_ID",
    "PANOPTES_CLIENT_SECRET",
    "PANOPTES_USERNAME",
    "PANOPTES_PASSWORD",
)


def _outputs(notebook: nbformat.NotebookNode) -> str:
    """Return every text output of an executed notebook."""
    text = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text.append(output["text"])
            elif output.get("output_type") in ("execute_result", "display_data"):
                text.append(output.get("data", {}).get("text/plain", ""))
            elif output.get("output_type") == "error":
                text.append("\n".join(output.get("traceback", [])))
    return "\n".join(text)


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_notebook_acts_only_as_a_pi():
    # No export service, state database or approval in the PI's cells.
    source = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code")
    for forbidden in ("EpoProject", "ExportService", ".approve(", "service.yaml", "sqlite", "export.serve"):
        assert forbidden not in source, forbidden
    assert "EpoClient(" in source


class Operator(threading.Thread):
    """EPO's side while the notebook runs: approve every quarantined batch
    of the project through the operators' API; once everything is decided
    and published, fill the subject set (twice: nothing is sent twice),
    link it to the workflow, and save a FAKE classification export of its
    subjects where the web application reads saved exports.
    """

    def __init__(self, site, token, config, zooniverse, exports, catalog_path):
        super().__init__(daemon=True)
        self.site, self.token, self.config = site, token, config
        self.zooniverse, self.exports, self.catalog_path = zooniverse, exports, catalog_path
        self.stop = threading.Event()
        self.approved = []
        self.commands = []
        self.error = None

    def run(self):
        try:
            with self.site.client(self.token) as http:
                done = False
                while not self.stop.is_set():
                    self.decide(http)
                    if not done and self.published(http):
                        self.fill_subject_set()
                        done = True
                    self.stop.wait(1)
        except Exception:
            self.error = traceback.format_exc()

    def decide(self, http):
        r = http.get(
            "/v1/operator/batches", params={"project": PROJECT, "state": "quarantined", "limit": 500}
        )
        r.raise_for_status()
        batches = [b["batch"] for b in r.json()["batches"]]
        if batches:
            body = {
                "decision": "approve",
                "batches": batches,
                "reason": "tutorial: contact sheet looked fine",
            }
            r = http.post("/v1/operator/decisions", json=body)
            r.raise_for_status()
            self.approved += batches

    def published(self, http):
        r = http.get("/v1/operator/projects")
        r.raise_for_status()
        counts = r.json()["projects"].get(PROJECT, {})
        datasets, images = counts.get("datasets", {}), counts.get("images", {})
        return (
            bool(datasets) and set(datasets) <= {"published", "rejected"} and images.get("published", 0) > 0
        )

    def epo(self, *args):
        env = dict(os.environ, **self.zooniverse_env())
        result = subprocess.run(
            [EPO, "--config", self.config, *args], capture_output=True, text=True, env=env
        )
        self.commands.append((args, result.returncode, result.stdout, result.stderr))
        assert result.returncode == 0, (args, result.stdout, result.stderr[-3000:])

    def zooniverse_env(self):
        return {
            "PANOPTES_ENDPOINT": self.zooniverse.url,
            "PANOPTES_CLIENT_ID": self.zooniverse.client_id,
            "PANOPTES_CLIENT_SECRET": self.zooniverse.client_secret,
        }

    def fill_subject_set(self):
        for _ in range(2):
            self.epo("subject-set", PROJECT, "--name", SUBJECT_SET, "--poll-interval", "0.5")
        workflow = next(iter(self.zooniverse.workflows))
        self.epo("link-workflow", PROJECT, "--name", SUBJECT_SET, "--workflow", workflow)
        # Zooniverse's part: FAKE volunteers classify the set's subjects.
        (subject_set,) = [
            s for s in self.zooniverse.subject_sets.values() if s["display_name"] == SUBJECT_SET
        ]
        subjects = {s["id"]: dict(s["metadata"]) for s in self.zooniverse.set_subjects(subject_set["id"])}
        catalog = Table.read(self.catalog_path, format="ascii.csv")
        note_of = {str(o): str(n) for o, n in zip(catalog["object_id"], catalog["note"])}
        partial = self.exports / f".{PROJECT}.csv"
        write_fake_classification_export(
            str(partial),
            subjects,
            n_rows=15 * len(subjects),
            star_probability=lambda sid, m: (
                0.85 if note_of.get(str(m.get("#object_id"))) == "2mass_star" else 0.1
            ),
        )
        partial.rename(self.exports / f"{PROJECT}.csv")


def _stop(process, log):
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log.close()


def test_tutorial_notebook_runs_as_a_pi_against_epo(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for key in PANOPTES_KEYS:  # neither the PI nor EPO's web application has Zooniverse credentials here
        monkeypatch.delenv(key, raising=False)
    exports = tmp_path / "exports"
    exports.mkdir()
    monkeypatch.setenv(EXPORTS_ENV, str(exports))
    port = free_port()
    config = write_config(tmp_path / "epo", port=port)
    tokens = Worker(config)  # creates the state database; makes the tokens
    try:
        pi_token = tokens.token("demo_pi", "pi")
        operator_token = tokens.token("epo_operator", "operator")
    finally:
        tokens.close()
    site = WebSite(config, str(tmp_path / "server.log"), port=port, rate_limit=100000)
    worker_log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(
        [EPO, "--config", config, "worker", "--interval", "2"], stdout=worker_log, stderr=subprocess.STDOUT
    )
    zooniverse = PanoptesStandIn(project_id=4242)
    work = tmp_path / "work"
    operator = Operator(
        site, operator_token, config, zooniverse, exports, work / "repo" / "catalogs" / "sample_catalog.csv"
    )
    try:
        # The kernel inherits this process's environment: EPO's address and
        # the PI's token, as on the RSP.
        monkeypatch.setenv("EPO_URL", site.api)
        monkeypatch.setenv("ACCESS_TOKEN", pi_token)
        monkeypatch.setenv("TUTORIAL_ZOONIVERSE_PROJECT", "4242")
        monkeypatch.setenv("EPO_TUTORIAL_DIR", str(work))
        monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        operator.start()
        client = nbclient.NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        started = time.monotonic()
        try:
            client.execute()
        finally:
            executed = tmp_path / "executed.ipynb"
            nbformat.write(notebook, executed)
            print(f"executed notebook: {executed} ({time.monotonic() - started:.0f} s)")
            operator.stop.set()
            operator.join(timeout=120)
            assert operator.error is None, operator.error
        text = _outputs(notebook)
        sets = list(zooniverse.subject_sets.values())
        external_ids = zooniverse.external_ids(sets[0]["id"]) if sets else []
        creates = len(zooniverse.api_requests("POST", "/api/subject_set_imports"))
        (workflow,) = zooniverse.workflows.values()
    finally:
        operator.stop.set()
        _stop(worker, worker_log)
        site.close()
        zooniverse.close()
    assert operator.approved, "the operator approved nothing"
    assert [s["display_name"] for s in sets] == [SUBJECT_SET]
    # One subject per published object, sent once although EPO synchronised
    # twice (one import only).
    counts = collections.Counter(external_ids)
    assert counts and max(counts.values()) == 1, counts.most_common(3)
    assert all(e.startswith(f"{PROJECT}:") for e in external_ids)
    assert creates == 1
    assert workflow["links"]["subject_sets"] == [sets[0]["id"]]
    assert f"{len(external_ids)} published subjects" in text
    assert f"{len(external_ids)} subjects sent by EPO" in text
    assert "zooniverse_classifications in u/demo_pi/zooniverse_classifications/" in text
    for secret in (zooniverse.client_secret, pi_token, operator_token):
        assert secret not in text and secret not in site.output()
    assert (tmp_path / "work" / "contact_sheet.png").stat().st_size > 0
